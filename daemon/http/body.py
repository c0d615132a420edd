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
        # Read from the raw ASGI headers (lower-case names, as servers send them): request.headers
        # would parse them all into a mapping first, for the one header needed here.
        for name, value in request.scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    raise PayloadTooLarge(f"Request body is {value.decode()} bytes; the limit is {self.limit}")
                return

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
