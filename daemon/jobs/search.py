"""Searching artefacts by pipeline, time and text (``GET /v1/artifacts``).

Every artefact a pipeline saves is indexed in ``artifact_text`` (an SQLite FTS5 table; a plain
table searched with LIKE where FTS5 is missing): its name, its ``meta`` values, the job's text
parameters (the prompt, the story, the persona's name) and, for text and JSON files, the content.
So a search for "lighthouse" finds the story that tells of one, and the images made for it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

TABLE = "artifact_text"
#: Bytes of a text artefact that are indexed.
CONTENT_LIMIT = 65_536
_WORD = re.compile(r"\w+", re.UNICODE)
_TEXTUAL = ("text/", "application/json")


def ensure_schema(db) -> None:
    """Create the text index (FTS5 where SQLite has it)."""
    try:
        db.execute(
            f"create virtual table if not exists {TABLE} using fts5("
            "job_id unindexed, path unindexed, body, tokenize = 'unicode61 remove_diacritics 2')"
        )
    except sqlite3.OperationalError:  # an SQLite built without FTS5
        db.execute(f"create table if not exists {TABLE} (job_id text, path text, body text)")


def _is_fts(db) -> bool:
    rows = list(db.execute("select sql from sqlite_master where name = ?", [TABLE]).fetchall())
    return bool(rows) and "fts5" in (rows[0][0] or "").lower()


def strings(value: Any, limit: int = 20_000) -> list[str]:
    """The text inside a JSON value, leaving out data URIs and base64 blobs."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if not v.startswith("data:") and len(v) <= limit:
                out.append(v)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            pass  # numbers make poor search terms

    walk(value)
    return out


def body_for(name: str, media_type: str, data: bytes, meta: dict | None, params: Any) -> str:
    parts = [name, *strings(meta or {}), *strings(params or {})]
    if media_type.startswith(_TEXTUAL):
        parts.append(data[:CONTENT_LIMIT].decode("utf-8", "replace"))
    return "\n".join(p for p in parts if p)


def index_artifact(db, job_id: str, path: str, body: str) -> None:
    """Index one artefact's text; the caller (:meth:`JobStore.index_text`) holds the store's lock."""
    db.execute(f"delete from {TABLE} where job_id = ? and path = ?", [job_id, path])
    db.execute(f"insert into {TABLE} (job_id, path, body) values (?, ?, ?)", [job_id, path, body])


def search(
    db,
    *,
    q: str | None = None,
    pipeline: str | None = None,
    since: float | None = None,
    until: float | None = None,
    media_type: str | None = None,
    job_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    owner: str | None = None,
) -> list[dict[str, Any]]:
    """Artefacts (newest first) of finished or running jobs matching every filter given
    (``owner``, a user's scope: of that principal's jobs only); the caller
    (:meth:`JobStore.search_artifacts`) holds the store's lock."""
    where = ["a.name != 'metadata.json'"]
    args: list[Any] = []
    select = "select a.job_id, a.path, a.name, a.media_type, a.bytes, a.meta, a.created_at, j.pipeline, j.state"
    joins = " from artifacts a join jobs j on j.id = a.job_id"
    words = _WORD.findall(q or "")
    fts = _is_fts(db) if words else False
    if words and fts:
        select += f", snippet({TABLE}, 2, '[', ']', '…', 12) as snippet"
        joins += f" join {TABLE} on {TABLE}.job_id = a.job_id and {TABLE}.path = a.path"
        where.append(f"{TABLE} match ?")
        args.append(" AND ".join('"' + w.replace('"', "") + '"*' for w in words))
    elif words:
        joins += f" join {TABLE} t on t.job_id = a.job_id and t.path = a.path"
        for w in words:
            where.append("t.body like ?")
            args.append(f"%{w}%")
    for clause, value in (
        ("j.pipeline = ?", pipeline),
        ("a.created_at >= ?", since),
        ("a.created_at < ?", until),
        ("a.job_id = ?", job_id),
        ("j.owner = ?", owner),
    ):
        if value is not None and (value != "" or clause == "j.owner = ?"):
            where.append(clause)
            args.append(value)
    if media_type:
        where.append("a.media_type like ?")
        args.append(media_type.rstrip("*") + "%")
    sql = f"{select}{joins} where {' and '.join(where)} order by a.created_at desc, a.id desc limit ? offset ?"
    cursor = db.execute(sql, [*args, limit, offset])
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    for r in rows:
        r["meta"] = json.loads(r["meta"]) if r["meta"] else {}
        r["url"] = f"/v1/files/{r['path']}"
    return rows
