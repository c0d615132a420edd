"""Named records that outlive jobs: personas (seed 003), upserted by name.

One SQLite table at ``<data_dir>/records.db``: (collection, owner, key) -> a JSON object. The
owner is the principal whose job wrote the record: each principal has its own namespace (two
users' "Ada" are two records), a user reads its own only and an admin all (records from before
owners existed are the admin's, ``UNOWNED``). Keys compare
case- and space-insensitively ("Ada  Lovelace" is "ada lovelace"). ``upsert`` sets fields and
appends to list fields in one transaction, skipping items the list already holds, so a retried
pipeline step does not add an image twice. Pipelines use it through ``ctx.record_get`` and
``ctx.record_upsert``; ``GET /v1/personas`` reads it.
"""

from __future__ import annotations

import builtins
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from loom.sdk.errors import InvalidRequest

from .durability import Durability, connect
from .principals import UNOWNED

COLLECTION = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_KEY = 200


def normalize_key(key: str) -> str:
    """What a key is compared by: whitespace collapsed, case folded."""
    return " ".join(str(key).split()).casefold()


class RecordStore:
    def __init__(self, path: Path, durability: Durability = "normal") -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = connect(path, durability, isolation_level=None)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            columns = [r[1] for r in self._db.execute("pragma table_info(records)")]
            self._db.execute("begin immediate")
            try:
                if columns and "owner" not in columns:  # a store from before owners: key it by owner too
                    self._db.execute("alter table records rename to records_v1")
                self._db.execute(
                    "create table if not exists records (collection text not null, owner text not null default '', "
                    "key text not null, data text not null, created_at real not null, updated_at real not null, "
                    "primary key (collection, owner, key))"
                )
                if columns and "owner" not in columns:
                    self._db.execute(
                        "insert into records (collection, owner, key, data, created_at, updated_at) "
                        "select collection, ?, key, data, created_at, updated_at from records_v1",
                        [UNOWNED],
                    )
                    self._db.execute("drop table records_v1")
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _check(collection: str, key: str) -> str:
        if not isinstance(collection, str) or not COLLECTION.match(collection):
            raise InvalidRequest(f"record collection {collection!r} must be lowercase letters, digits, '-' or '_'")
        norm = normalize_key(key)
        if not norm or len(norm) > MAX_KEY:
            raise InvalidRequest(f"record key must be 1 to {MAX_KEY} characters, got {key!r}", param="key")
        return norm

    def get(self, collection: str, key: str, owner: str | None = UNOWNED) -> dict[str, Any] | None:
        """``owner``'s record (None: anyone's, the latest updated: an admin's view)."""
        norm = self._check(collection, key)
        mine, args = ("and owner = ?", [owner]) if owner is not None else ("", [])
        with self._lock:
            row = self._db.execute(
                "select key, data, created_at, updated_at from records where collection = ? and key = ? "
                f"{mine} order by updated_at desc limit 1",
                [collection, norm, *args],
            ).fetchone()
        return _record(collection, row) if row else None

    def list(
        self, collection: str, *, limit: int = 100, offset: int = 0, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``owner`` (a user's scope): that principal's only."""
        self._check(collection, "x")
        mine, args = ("and owner = ?", [owner]) if owner is not None else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"select key, data, created_at, updated_at from records where collection = ? {mine} "
                "order by updated_at desc, key limit ? offset ?",
                [collection, *args, limit, offset],
            ).fetchall()
        return [_record(collection, r) for r in rows]

    def upsert(
        self,
        collection: str,
        key: str,
        *,
        fields: dict[str, Any] | None = None,
        append: dict[str, builtins.list[Any]] | None = None,
        owner: str = UNOWNED,
    ) -> dict[str, Any]:
        norm = self._check(collection, key)
        for name, items in (append or {}).items():
            if not isinstance(items, list):
                raise InvalidRequest(f"append[{name!r}] must be a list, got {type(items).__name__}")
        now = time.time()
        with self._lock:
            self._db.execute("begin immediate")
            try:
                row = self._db.execute(
                    "select data, created_at from records where collection = ? and owner = ? and key = ?",
                    [collection, owner, norm],
                ).fetchone()
                data = json.loads(row[0]) if row else {}
                data.update(fields or {})
                for name, items in (append or {}).items():
                    current = data.get(name)
                    current = list(current) if isinstance(current, list) else []
                    seen = {json.dumps(x, sort_keys=True, default=str) for x in current}
                    for item in items:
                        mark = json.dumps(item, sort_keys=True, default=str)
                        if mark not in seen:
                            current.append(item)
                            seen.add(mark)
                    data[name] = current
                created_at = row[1] if row else now
                self._db.execute(
                    "insert into records (collection, owner, key, data, created_at, updated_at) "
                    "values (?, ?, ?, ?, ?, ?) on conflict (collection, owner, key) do update set "
                    "data = excluded.data, updated_at = excluded.updated_at",
                    [collection, owner, norm, json.dumps(data, default=str), created_at, now],
                )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
        return {**_record(collection, (norm, json.dumps(data, default=str), created_at, now)), "created": row is None}


def _record(collection: str, row) -> dict[str, Any]:
    key, data, created_at, updated_at = row
    return {
        "collection": collection,
        "key": key,
        "data": json.loads(data),
        "created_at": created_at,
        "updated_at": updated_at,
    }
