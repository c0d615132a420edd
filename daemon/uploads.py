"""Files uploaded through OpenAI's Files API (``/v1/files``), and the files batches write.

Each file's bytes live in the data dir under ``uploads/`` (outside the public folders, so the
route that serves generated files never reaches them), written atomically; its metadata (the
``OpenAIFile`` fields, its owner, where its bytes are) is a row of ``files.db`` (SQLite through
sqlite-utils, like the job store). Every read names the caller (``owner``): a file of someone
else's is a 404, as one that does not exist. A file past its ``expires_at`` is gone the same way
and removed by :meth:`UploadStore.purge_expired` (a timer).
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

from loom.sdk.errors import InvalidRequest, NotFound, PayloadTooLarge
from sqlite_utils import Database

from .atomic import write_atomic
from .durability import Durability, connect

FOLDER = "uploads"
#: What a client may upload a file for (OpenAI's ``CreateFileRequest.purpose``).
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
#: What a batch writes its output and error files as.
BATCH_OUTPUT = "batch_output"
#: OpenAI's bounds on ``expires_after.seconds`` (one hour to thirty days).
EXPIRES_MIN_S, EXPIRES_MAX_S = 3600, 30 * 86400
#: Batch input files expire after thirty days unless told otherwise, as OpenAI's do.
BATCH_DEFAULT_EXPIRY_S = 30 * 86400


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def is_file_id(value: str) -> bool:
    """An OpenAI file id (``file-`` and letters or digits): what ``/v1/files/{...}`` routes to this store."""
    rest = value[5:]
    return value.startswith("file-") and 0 < len(rest) <= 64 and rest.replace("_", "").isalnum()


class UploadStore:
    def __init__(self, data_dir: Path, db_path: Path, max_bytes: int, durability: Durability = "normal") -> None:
        self.root = Path(data_dir).resolve()
        self.max_bytes = max_bytes
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(connect(db_path, durability))
        self._lock = threading.RLock()
        with self._lock:
            self.db.table("files").create(
                {
                    "id": str,
                    "bytes": int,
                    "created_at": int,
                    "expires_at": int,
                    "filename": str,
                    "purpose": str,
                    "status": str,
                    "owner": str,
                    "path": str,
                },
                pk="id",
                not_null={"bytes", "created_at", "filename", "purpose", "owner", "path"},
                if_not_exists=True,
            )
            self.db.table("files").create_index(["owner", "created_at"], if_not_exists=True)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # --- writing ------------------------------------------------------------------------------

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"The file is {size} bytes; files may be at most {self.max_bytes} bytes ([files] max_bytes)",
                param="file",
            )

    def create(
        self,
        data: bytes,
        filename: str,
        purpose: str,
        owner: str,
        *,
        expires_in: int | None = None,
        file_id: str | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` as a new file (``file_id`` given: replace that one, as a batch that
        writes its output again after a restart does)."""
        self.check_size(len(data))
        if expires_in is None and purpose == "batch":
            expires_in = BATCH_DEFAULT_EXPIRY_S
        file_id = file_id or new_file_id()
        rel = f"{FOLDER}/{file_id}"
        write_atomic(self.root / rel, data)  # StorageError (507) when the disk is full
        now = int(time.time())
        row = {
            "id": file_id,
            "bytes": len(data),
            "created_at": now,
            "expires_at": now + expires_in if expires_in else None,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "owner": owner,
            "path": rel,
        }
        with self._lock:
            self.db.table("files").insert(row, replace=True)
        return view(row)

    # --- reading ------------------------------------------------------------------------------

    def row(self, file_id: str, owner: str | None) -> dict[str, Any]:
        """The caller's file ``file_id`` (``owner`` None: an admin's, anyone's); NotFound for
        another's, an expired or a missing one."""
        with self._lock:
            rows = list(self.db.query("select * from files where id = ?", [file_id]))
        if not rows or (owner is not None and rows[0]["owner"] != owner) or _expired(rows[0]):
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return rows[0]

    def get(self, file_id: str, owner: str | None) -> dict[str, Any]:
        return view(self.row(file_id, owner))

    def content(self, file_id: str, owner: str | None) -> bytes:
        row = self.row(file_id, owner)
        try:
            return (self.root / row["path"]).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"The content of {file_id} is gone from the data dir", param="file_id") from None

    def page(
        self,
        owner: str | None,
        *,
        purpose: str | None = None,
        limit: int = 10_000,
        after: str | None = None,
        order: str = "desc",
    ) -> dict[str, Any]:
        """OpenAI's ``ListFilesResponse``: the caller's files by ``created_at``, after the cursor."""
        if order not in ("asc", "desc"):
            raise InvalidRequest(f"order must be 'asc' or 'desc', got {order!r}", param="order")
        where: list[str] = ["(expires_at is null or expires_at > ?)"]
        args: list[object] = [int(time.time())]
        if owner is not None:  # None: an admin lists everyone's
            where.append("owner = ?")
            args.append(owner)
        if purpose:
            where.append("purpose = ?")
            args.append(purpose)
        if after:  # the rowid follows the order files were stored in (created_at is in whole seconds)
            self.row(after, owner)
            where.append(f"rowid {'<' if order == 'desc' else '>'} (select rowid from files where id = ?)")
            args.append(after)
        sql = f"select * from files where {' and '.join(where)} order by rowid {order} limit ?"
        with self._lock:
            rows = list(self.db.query(sql, [*args, limit + 1]))
        data = [view(r) for r in rows[:limit]]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(rows) > limit,
        }

    # --- removing -----------------------------------------------------------------------------

    def delete(self, file_id: str, owner: str | None) -> dict[str, Any]:
        row = self.row(file_id, owner)
        self._remove(row)
        return {"id": file_id, "object": "file", "deleted": True}

    def _remove(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.db.execute("delete from files where id = ?", [row["id"]])
        (self.root / row["path"]).unlink(missing_ok=True)

    def purge_expired(self) -> int:
        """Remove the files past their ``expires_at``; how many."""
        with self._lock:
            rows = list(self.db.query("select * from files where expires_at <= ?", [int(time.time())]))
        for row in rows:
            self._remove(row)
        return len(rows)


def _expired(row: dict[str, Any]) -> bool:
    return row["expires_at"] is not None and row["expires_at"] <= time.time()


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A row as OpenAI's ``OpenAIFile``."""
    out = {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": row["status"],
    }
    if row["expires_at"] is not None:
        out["expires_at"] = row["expires_at"]
    return out
