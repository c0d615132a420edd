"""Batches and their lines: SQLite (WAL) at ``<data_dir>/batches.db`` through sqlite-utils.

- ``batches``: one row per batch: the fields of OpenAI's ``Batch`` object (status, its ``*_at``
  times, the files, ``errors``, ``metadata``), its owner and the id of the job that runs it.
- ``batch_lines``: one row per request of its input file, written at validation; a line's
  result (status code and body, or error) is written in the same statement that marks it done,
  so after a restart the lines with a result are never run again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from loom.sdk.errors import NotFound
from sqlite_utils import Database

from ..durability import Durability, connect
from .lines import Line

#: Every status of OpenAI's Batch object.
VALIDATING, FAILED, IN_PROGRESS, FINALIZING = "validating", "failed", "in_progress", "finalizing"
COMPLETED, EXPIRED, CANCELLING, CANCELLED = "completed", "expired", "cancelling", "cancelled"
STATUSES = (VALIDATING, FAILED, IN_PROGRESS, FINALIZING, COMPLETED, EXPIRED, CANCELLING, CANCELLED)
#: A batch in one of these is over.
ENDED = (FAILED, COMPLETED, EXPIRED, CANCELLED)
#: The status a batch has when each ``*_at`` time is set.
STAMPS = {
    IN_PROGRESS: "in_progress_at",
    FINALIZING: "finalizing_at",
    COMPLETED: "completed_at",
    FAILED: "failed_at",
    EXPIRED: "expired_at",
    CANCELLING: "cancelling_at",
    CANCELLED: "cancelled_at",
}
#: A line's states: not run yet, answered 2xx (the output file), failed (the error file).
PENDING, DONE, ERROR = "pending", "done", "error"
_JSON = ("errors", "metadata", "usage")


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


class BatchStore:
    def __init__(self, path: Path, durability: Durability = "normal") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(connect(path, durability))
        self._lock = threading.RLock()
        with self._lock:
            self._migrate()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _migrate(self) -> None:
        stamps = dict.fromkeys(STAMPS.values(), int)
        self.db.table("batches").create(
            {
                "id": str,
                "owner": str,
                "endpoint": str,
                "input_file_id": str,
                "completion_window": str,
                "status": str,
                "created_at": int,
                "expires_at": int,
                **stamps,
                "output_file_id": str,
                "error_file_id": str,
                "errors": str,
                "metadata": str,
                "usage": str,
                "model": str,
                "output_expires_in": int,
                "job_id": str,
            },
            pk="id",
            not_null={"owner", "endpoint", "input_file_id", "status", "created_at"},
            if_not_exists=True,
        )
        self.db.table("batches").create_index(["owner", "created_at"], if_not_exists=True)
        self.db.table("batch_lines").create(
            {
                "batch_id": str,
                "line": int,
                "custom_id": str,
                "model": str,
                "body": bytes,
                "state": str,
                "status_code": int,
                "request_id": str,
                "response": bytes,
                "finished_at": float,
            },
            pk=("batch_id", "line"),
            not_null={"custom_id", "state"},
            if_not_exists=True,
        )
        self.db.table("batch_lines").create_index(["batch_id", "state"], if_not_exists=True)

    # --- batches ------------------------------------------------------------------------------

    def create(self, row: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.db.table("batches").insert(_encode_row(row))
        return self.get(row["id"])

    def get(self, batch_id: str, owner: str | None = None) -> dict[str, Any]:
        """The batch (the caller's, when ``owner`` is given); NotFound otherwise."""
        with self._lock:
            rows = list(self.db.query("select * from batches where id = ?", [batch_id]))
        if not rows or (owner is not None and rows[0]["owner"] != owner):
            raise NotFound(f"No batch found with id '{batch_id}'", param="batch_id")
        return _decode_row(rows[0])

    def update(self, batch_id: str, **fields: Any) -> dict[str, Any]:
        """Set ``fields``; a new ``status`` stamps its ``*_at`` time too (once)."""
        status = fields.get("status")
        with self._lock:
            if status in STAMPS:
                current = self.get(batch_id)
                if current[STAMPS[status]] is None:
                    fields[STAMPS[status]] = int(time.time())
            self.db.table("batches").update(batch_id, _encode_row(fields))
        return self.get(batch_id)

    def page(self, owner: str | None, *, limit: int = 20, after: str | None = None) -> tuple[list[dict], bool]:
        """The batches (of ``owner``; None: everyone's), newest first, after the cursor; and
        whether there are more."""
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if after:  # the rowid follows the order batches were created in (created_at is in seconds)
            self.get(after, owner)
            where.append("rowid < (select rowid from batches where id = ?)")
            args.append(after)
        sql = "select * from batches"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by rowid desc limit ?"
        with self._lock:
            rows = list(self.db.query(sql, [*args, limit + 1]))
        return [_decode_row(r) for r in rows[:limit]], len(rows) > limit

    # --- lines --------------------------------------------------------------------------------

    def add_lines(self, batch_id: str, lines: Iterable[Line], **fields: Any) -> None:
        """Write a validated file's lines and the batch's new ``fields``, in one transaction."""
        rows = (
            {
                "batch_id": batch_id,
                "line": x.line,
                "custom_id": x.custom_id,
                "model": x.model,
                "body": x.body,
                "state": PENDING,
            }
            for x in lines
        )
        with self._lock, self.db.atomic():
            self.db.execute("delete from batch_lines where batch_id = ?", [batch_id])
            self.db.table("batch_lines").insert_all(rows, batch_size=500)
            self.update(batch_id, **fields)

    def pending(self, batch_id: str) -> list[dict[str, Any]]:
        """The lines not run yet, grouped by model (then in file order)."""
        with self._lock:
            return list(
                self.db.query(
                    "select line, custom_id, model, body from batch_lines where batch_id = ? and state = ? "
                    "order by model, line",
                    [batch_id, PENDING],
                )
            )

    def finish_line(
        self, batch_id: str, line: int, state: str, status_code: int | None, request_id: str, response: bytes
    ) -> None:
        """Record a line's result (one statement: the line is done or it is not)."""
        with self._lock:
            self.db.execute(
                "update batch_lines set state = ?, status_code = ?, request_id = ?, response = ?, finished_at = ? "
                "where batch_id = ? and line = ? and state = ?",
                [state, status_code, request_id, response, time.time(), batch_id, line, PENDING],
            )

    def counts(self, batch_id: str) -> dict[str, int]:
        """OpenAI's ``request_counts``: total, completed (2xx), failed."""
        with self._lock:
            rows = list(
                self.db.query(
                    "select state, count(*) as n from batch_lines where batch_id = ? group by state", [batch_id]
                )
            )
        by = {r["state"]: r["n"] for r in rows}
        return {"total": sum(by.values()), "completed": by.get(DONE, 0), "failed": by.get(ERROR, 0)}

    def results(self, batch_id: str, state: str) -> list[dict[str, Any]]:
        """The lines in ``state``, in file order, with their results."""
        with self._lock:
            return list(
                self.db.query(
                    "select line, custom_id, status_code, request_id, response from batch_lines "
                    "where batch_id = ? and state = ? order by line",
                    [batch_id, state],
                )
            )


def _encode_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (msgspec.json.encode(v).decode() if k in _JSON and v is not None else v) for k, v in row.items()}


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    for k in _JSON:
        if row.get(k):
            row[k] = msgspec.json.decode(row[k])
    return row
