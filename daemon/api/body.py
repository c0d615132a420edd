"""Reading and decoding request bodies strictly, within the size limit."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request
from loom.sdk.errors import InvalidRequest, PayloadTooLarge

from .errors import validation_error

T = TypeVar("T")


class BodyReader:
    """Reads request bodies up to the configured limit (``[daemon.limits] max_body_bytes``); a
    route asks for it as ``bodies: NamedDependency[BodyReader]``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def check_declared(self, request: Request) -> None:
        """Refuse a body whose Content-Length is over the limit before reading any of it."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise PayloadTooLarge(f"Request body is {declared} bytes; the limit is {self.limit}")

    async def read(self, request: Request) -> bytes:
        self.check_declared(request)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {self.limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def decode(self, request: Request, type_: type[T]) -> T:
        """The body decoded strictly as ``type_``; an empty body is an error."""
        body = await self.read(request)
        if not body:
            raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
        try:
            return msgspec.json.decode(body, type=type_)
        except msgspec.MsgspecError as e:
            raise validation_error(e) from None
