"""The job store: SQLite (WAL) at ``<data_dir>/loom.db`` through sqlite-utils.

Tables:

- ``jobs``: one row per accepted job (state, stage, progress, params, result, error, usage,
  timings, the output folder, the fields the pipeline adds to ``metadata.json``, the *names*
  of the per-request upstream key headers it was started with (never the keys), and its owner
  and priority, which order it among queued jobs).
- ``job_events``: every event of every job, in order; ``seq`` counts from 1 per job and is the
  SSE event id, so ``Last-Event-ID`` resumes a stream exactly.
- ``job_steps``: the stored result of every finished ``ctx.step`` (what makes resume work).
- ``artifacts``: metadata of every file a job saved (path, media type, size, sha256, meta).
- ``job_lineage``: nodes a pipeline reported with ``lineage`` events (merged by node id).
- ``artifact_text``: the searchable text of each artefact (FTS5; see :mod:`.search`).

Every write is committed when it returns (sqlite-utils 4 commits ``execute`` and table writes
outside explicit transactions), so a SIGKILL loses nothing that was acknowledged. One
connection is shared behind a lock: the event loop and the clean-up job may both use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from sqlite_utils import Database

from ..durability import Durability, connect
from ..principals import UNOWNED
from . import search

#: 2: jobs have owners (principals); rows from before are the admin's (see ``_own_legacy``).
SCHEMA_VERSION = 2

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
#: States in which nothing runs; ``interrupted`` is resumable but not finished.
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, INTERRUPTED})
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
RESUMABLE = frozenset({INTERRUPTED, FAILED, CANCELLED})

_JSON_COLUMNS = ("params", "result", "error", "usage", "timings", "metadata", "upstream_keys")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class Event(msgspec.Struct, frozen=True):
    """One job event as stored and as sent over SSE and the WebSocket."""

    job_id: str
    id: int  # per-job sequence number, from 1
    type: str
    data: dict[str, Any]
    created_at: float


class JobStore:
    def __init__(self, path: Path, durability: Durability = "normal") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL; "normal" survives a process crash, "full" a power cut too (see ..durability).
        self.db = Database(connect(self.path, durability))
        self._lock = threading.RLock()
        self._seq: dict[str, int] = {}
        with self._lock:
            self._migrate()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # --- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        db = self.db
        db.table("jobs").create(
            {
                "id": str,
                "pipeline": str,
                "plugin": str,
                "state": str,
                "stage": str,
                "progress": float,
                "message": str,
                "params": str,
                "result": str,
                "error": str,
                "output_dir": str,
                "created_at": float,
                "started_at": float,
                "finished_at": float,
                "updated_at": float,
                "attempts": int,
                "usage": str,
                "timings": str,
                "metadata": str,
                "upstream_keys": str,
                "owner": str,
                "priority": int,
            },
            pk="id",
            not_null={"pipeline", "state", "created_at"},
            defaults={"progress": 0.0, "attempts": 0, "stage": "", "message": ""},
            if_not_exists=True,
        )
        # Added after the first release of the schema.
        for column, kind in (("metadata", str), ("upstream_keys", str), ("owner", str), ("priority", int)):
            if column not in db.table("jobs").columns_dict:
                db.table("jobs").add_column(column, kind)
        db.table("jobs").create_index(["state"], if_not_exists=True)
        db.table("jobs").create_index(["pipeline", "created_at"], if_not_exists=True)
        db.table("jobs").create_index(["created_at"], if_not_exists=True)
        db.table("job_events").create(
            {"id": int, "job_id": str, "seq": int, "type": str, "data": str, "created_at": float},
            pk="id",
            not_null={"job_id", "seq", "type"},
            if_not_exists=True,
        )
        db.table("job_events").create_index(["job_id", "seq"], unique=True, if_not_exists=True)
        db.table("job_steps").create(
            {
                "job_id": str,
                "key": str,
                "result": bytes,
                "started_at": float,
                "finished_at": float,
                "seconds": float,
                "attempt": int,
            },
            pk=("job_id", "key"),
            if_not_exists=True,
        )
        db.table("artifacts").create(
            {
                "id": int,
                "job_id": str,
                "path": str,
                "name": str,
                "media_type": str,
                "bytes": int,
                "sha256": str,
                "meta": str,
                "created_at": float,
            },
            pk="id",
            not_null={"job_id", "path"},
            if_not_exists=True,
        )
        db.table("artifacts").create_index(["job_id", "path"], unique=True, if_not_exists=True)
        db.table("job_lineage").create(
            {"job_id": str, "node_id": str, "parent_id": str, "data": str, "updated_at": float},
            pk=("job_id", "node_id"),
            if_not_exists=True,
        )
        db.table("jobs").create_index(["owner", "created_at"], if_not_exists=True)
        db.table("jobs").create_index(["output_dir"], if_not_exists=True)
        search.ensure_schema(db)
        if db.execute("PRAGMA user_version").fetchone()[0] < 2:
            self._own_legacy()
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _own_legacy(self) -> None:
        """Jobs made before owners existed carry no owner, or the digest of the key that queued
        them (it only counted queued jobs then); nobody can say whose they are, so they become
        the admin's (UNOWNED: only admins see them). Done once: the schema version marks it."""
        self.db.execute("update jobs set owner = ? where owner is null or owner != ?", [UNOWNED, UNOWNED])

    # --- jobs -------------------------------------------------------------------------------

    def create_job(
        self,
        job_id: str,
        pipeline: str,
        plugin: str,
        params: bytes,
        output_dir: str,
        upstream_keys: list[str] | None = None,
        *,
        owner: str = UNOWNED,
        priority: int = 0,
    ) -> dict:
        """``upstream_keys``: the names of the key headers the job was started with (not the keys);
        ``owner``: the principal whose job it is (and whose queued jobs it counts among, see
        ``admission``); ``priority``: higher runs first among queued jobs."""
        now = time.time()
        row = {
            "id": job_id,
            "pipeline": pipeline,
            "plugin": plugin,
            "state": QUEUED,
            "stage": "queued",
            "progress": 0.0,
            "message": "",
            "params": params.decode(),
            "output_dir": output_dir,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "upstream_keys": _encode(sorted(upstream_keys or [])).decode(),
            "owner": owner,
            "priority": priority,
        }
        with self._lock:
            self.db.table("jobs").insert(row)
        job = self.get_job(job_id)
        assert job is not None, "a job inserted above is there"
        return job

    def get_job(self, job_id: str) -> dict | None:
        with self._lock:
            rows = list(self.db.query("select * from jobs where id = ?", [job_id]))
        return _job_row(rows[0]) if rows else None

    def owner_of_output(self, output_dir: str) -> str | None:
        """The owner of the job whose output folder is ``output_dir``; None if no job has it."""
        with self._lock:
            rows = list(self.db.query("select owner from jobs where output_dir = ? limit 1", [output_dir]))
        return (rows[0]["owner"] or UNOWNED) if rows else None

    def update_job(self, job_id: str, **fields: Any) -> None:
        for name in _JSON_COLUMNS:
            if name in fields and fields[name] is not None and not isinstance(fields[name], str):
                fields[name] = _encode(fields[name]).decode()
        fields["updated_at"] = time.time()
        with self._lock:
            self.db.table("jobs").update(job_id, fields)

    def list_jobs(
        self,
        *,
        states: Iterable[str] | None = None,
        pipeline: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[dict]:
        """Newest first; ``owner`` (a user's scope) lists only that principal's."""
        where: list[str] = []
        args: list[Any] = []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if states:
            states = list(states)
            where.append(f"state in ({', '.join('?' for _ in states)})")
            args += states
        if pipeline:
            where.append("pipeline = ?")
            args.append(pipeline)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        sql = "select * from jobs"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by created_at desc, id limit ? offset ?"
        with self._lock:
            rows = list(self.db.query(sql, [*args, limit, offset]))
        return [_job_row(r) for r in rows]

    def mark_interrupted(self) -> list[str]:
        """Jobs left ``queued`` or ``running`` by a daemon that died: now ``interrupted``."""
        with self._lock:
            ids = [
                r["id"]
                for r in self.db.query(
                    "select id from jobs where state in (?, ?) order by created_at", [QUEUED, RUNNING]
                )
            ]
            for job_id in ids:
                self.update_job(
                    job_id,
                    state=INTERRUPTED,
                    stage="interrupted",
                    message="the daemon stopped while the job was running",
                )
        return ids

    # --- events -----------------------------------------------------------------------------

    def append_event(self, job_id: str, type: str, data: dict[str, Any]) -> Event:
        with self._lock:
            seq = self._seq.get(job_id)
            if seq is None:
                row = next(
                    self.db.query("select coalesce(max(seq), 0) as seq from job_events where job_id = ?", [job_id])
                )
                seq = row["seq"]
            seq += 1
            now = time.time()
            self.db.table("job_events").insert(
                {"job_id": job_id, "seq": seq, "type": type, "data": _encode(data).decode(), "created_at": now}
            )
            self._seq[job_id] = seq
        return Event(job_id=job_id, id=seq, type=type, data=data, created_at=now)

    def events_after(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        with self._lock:
            rows = list(
                self.db.query(
                    "select * from job_events where job_id = ? and seq > ? order by seq limit ?",
                    [job_id, after, limit],
                )
            )
        return [Event(job_id, r["seq"], r["type"], _decode(r["data"]), r["created_at"]) for r in rows]

    def last_event_of(self, job_id: str, type: str) -> Event | None:
        """The job's latest event of ``type`` (``preview``: what its page shows), or None."""
        with self._lock:
            rows = list(
                self.db.query(
                    "select * from job_events where job_id = ? and type = ? order by seq desc limit 1", [job_id, type]
                )
            )
        return next((Event(job_id, r["seq"], r["type"], _decode(r["data"]), r["created_at"]) for r in rows), None)

    def last_event_id(self, job_id: str) -> int:
        with self._lock:
            if job_id in self._seq:
                return self._seq[job_id]
            row = next(self.db.query("select coalesce(max(seq), 0) as seq from job_events where job_id = ?", [job_id]))
            return row["seq"]

    # --- steps ------------------------------------------------------------------------------

    def get_step(self, job_id: str, key: str) -> bytes | None:
        with self._lock:
            rows = list(self.db.query("select result from job_steps where job_id = ? and key = ?", [job_id, key]))
        return rows[0]["result"] if rows else None

    def put_step(self, job_id: str, key: str, result: bytes, started: float, finished: float, attempt: int) -> None:
        row = {
            "job_id": job_id,
            "key": key,
            "result": result,
            "started_at": started,
            "finished_at": finished,
            "seconds": finished - started,
            "attempt": attempt,
        }
        with self._lock:
            self.db.table("job_steps").insert(row, replace=True)

    def steps(self, job_id: str) -> list[dict]:
        with self._lock:
            return list(
                self.db.query(
                    "select key, started_at, finished_at, seconds, attempt from job_steps "
                    "where job_id = ? order by finished_at",
                    [job_id],
                )
            )

    def step_stats(self, job_id: str) -> tuple[int, float]:
        with self._lock:
            row = next(
                self.db.query(
                    "select count(*) as n, coalesce(sum(seconds), 0) as s from job_steps where job_id = ?",
                    [job_id],
                )
            )
        return row["n"], row["s"]

    # --- artefacts --------------------------------------------------------------------------

    def put_artifact(
        self, job_id: str, path: str, name: str, media_type: str, size: int, sha256: str, meta: dict | None
    ) -> None:
        row = {
            "job_id": job_id,
            "path": path,
            "name": name,
            "media_type": media_type,
            "bytes": size,
            "sha256": sha256,
            "meta": _encode(meta or {}).decode(),
            "created_at": time.time(),
        }
        # (job_id, path) is the natural key: a rewritten file replaces its row.
        with self._lock, self.db.atomic():
            self.db.execute("delete from artifacts where job_id = ? and path = ?", [job_id, path])
            self.db.table("artifacts").insert(row)

    def artifacts(self, job_id: str) -> list[dict]:
        with self._lock:
            rows = list(
                self.db.query(
                    "select path, name, media_type, bytes, sha256, meta, created_at from artifacts "
                    "where job_id = ? order by id",
                    [job_id],
                )
            )
        for r in rows:
            r["meta"] = _decode(r["meta"]) if r["meta"] else {}
        return rows

    # --- lineage ----------------------------------------------------------------------------

    def index_text(self, job_id: str, path: str, body: str) -> None:
        """Make an artefact findable by its text (:mod:`.search`)."""
        with self._lock:
            search.index_artifact(self.db, job_id, path, body)

    def search_artifacts(self, **filters: Any) -> list[dict[str, Any]]:
        """Artefacts matching ``filters`` (:func:`.search.search`), newest first."""
        with self._lock:
            return search.search(self.db, **filters)

    def upsert_lineage(self, job_id: str, node: dict[str, Any]) -> None:
        """Merge ``node``'s fields into the stored node with the same ``id``."""
        node_id = str(node["id"])
        with self._lock:
            rows = list(
                self.db.query("select data from job_lineage where job_id = ? and node_id = ?", [job_id, node_id])
            )
            merged = {**_decode(rows[0]["data"]), **node} if rows else dict(node)
            parent = merged.get("parent")
            # An upsert keeps the row (and its rowid), so nodes stay in first-reported order.
            self.db.execute(
                "insert into job_lineage (job_id, node_id, parent_id, data, updated_at) values (?, ?, ?, ?, ?) "
                "on conflict (job_id, node_id) do update set parent_id = excluded.parent_id, "
                "data = excluded.data, updated_at = excluded.updated_at",
                [job_id, node_id, None if parent is None else str(parent), _encode(merged).decode(), time.time()],
            )

    def lineage(self, job_id: str) -> list[dict]:
        with self._lock:
            rows = list(self.db.query("select data from job_lineage where job_id = ? order by rowid", [job_id]))
        return [_decode(r["data"]) for r in rows]

    # --- retention --------------------------------------------------------------------------

    def expired(self, cutoff: float, states: Iterable[str] = FINISHED) -> list[dict]:
        states = list(states)
        with self._lock:
            rows = list(
                self.db.query(
                    "select id, output_dir, pipeline, state, coalesce(finished_at, updated_at) as finished_at "
                    f"from jobs where state in ({', '.join('?' for _ in states)}) "
                    "and coalesce(finished_at, updated_at) < ?",
                    [*states, cutoff],
                )
            )
        return rows

    def delete_job(self, job_id: str) -> None:
        with self._lock, self.db.atomic():
            for table in ("job_events", "job_steps", "artifacts", "job_lineage", search.TABLE):
                self.db.execute(f"delete from {table} where job_id = ?", [job_id])
            self.db.execute("delete from jobs where id = ?", [job_id])
            self._seq.pop(job_id, None)


def _job_row(row: dict) -> dict:
    for name in _JSON_COLUMNS:
        value = row.get(name)
        row[name] = _decode(value) if value else None
    return row
