"""Stored responses: SQLite (WAL) at ``<data_dir>/responses.db`` through sqlite-utils.

One row per response created with ``store`` left on: the response object as the client saw it,
the conversation it ended (the earlier conversation, the new input and the answer, as chat
messages) so that ``previous_response_id`` continues it with one read, across restarts, and the
request's input items as they are listed, and its owner (the principal that made it: a user reads,
continues and deletes its own only; rows from before owners existed are the admin's). Every
write is committed when it returns. One connection is shared behind a lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from loom.sdk.errors import NotFound
from loom.sdk.responses import ResponseObject
from loom.sdk.types import ChatMessage
from sqlite_utils import Database

from ..durability import Durability, connect
from ..principals import UNOWNED

_conversation = msgspec.json.Decoder(list[ChatMessage])
_response = msgspec.json.Decoder(ResponseObject)


@dataclass
class Stored:
    response: ResponseObject
    #: The conversation up to and including this response's answer (instructions left out:
    #: they are not carried to the next response).
    conversation: list[ChatMessage]
    #: The request's own input items as ``GET .../input_items`` lists them.
    input_items: list[dict[str, Any]]


class ResponseStore:
    def __init__(self, path: Path, durability: Durability = "normal") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(connect(self.path, durability))
        self._lock = threading.RLock()
        with self._lock:
            self.db.table("responses").create(
                {
                    "id": str,
                    "created_at": float,
                    "model": str,
                    "previous_response_id": str,
                    "response": str,
                    "conversation": str,
                    "input_items": str,
                    "owner": str,
                },
                pk="id",
                not_null={"created_at", "response", "conversation"},
                if_not_exists=True,
            )
            # A store written before input items were kept: its responses list none.
            if "input_items" not in self.db.table("responses").columns_dict:
                self.db.table("responses").add_column("input_items", str)
            # ... and before owners: its responses are the admin's (UNOWNED).
            if "owner" not in self.db.table("responses").columns_dict:
                self.db.table("responses").add_column("owner", str, not_null_default=UNOWNED)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def put(
        self,
        response: ResponseObject,
        conversation: list[ChatMessage],
        input_items: list[dict[str, Any]],
        owner: str = UNOWNED,
    ) -> None:
        row = {
            "id": response.id,
            "created_at": time.time(),
            "model": response.model,
            "previous_response_id": response.previous_response_id,
            "response": msgspec.json.encode(response).decode(),
            "conversation": msgspec.json.encode(conversation).decode(),
            "input_items": msgspec.json.encode(input_items).decode(),
            "owner": owner,
        }
        with self._lock:
            self.db.table("responses").upsert(row, pk="id")

    def get(self, response_id: str, *, param: str | None = None, owner: str | None = None) -> Stored:
        """The stored response; NotFound if there is none or (``owner``: a user's scope) it is another's."""
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT response, conversation, input_items, owner FROM responses WHERE id = ?", [response_id]
                )
            )
        if not rows or (owner is not None and (rows[0]["owner"] or UNOWNED) != owner):
            raise NotFound(f"No stored response with id '{response_id}'", param=param)
        row = rows[0]
        items = msgspec.json.decode(row["input_items"]) if row["input_items"] else []
        return Stored(_response.decode(row["response"]), _conversation.decode(row["conversation"]), items)

    def delete(self, response_id: str, owner: str | None = None) -> None:
        with self._lock:
            if owner is None:
                deleted = self.db.execute("DELETE FROM responses WHERE id = ?", [response_id]).rowcount
            else:
                sql = "DELETE FROM responses WHERE id = ? AND coalesce(owner, '') = ?"
                deleted = self.db.execute(sql, [response_id, owner]).rowcount
        if not deleted:
            raise NotFound(f"No stored response with id '{response_id}'")

    def __len__(self) -> int:
        with self._lock:
            return self.db.table("responses").count
