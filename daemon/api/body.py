"""Reading and decoding request bodies strictly, within the size limit."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request

from loom.sdk.errors import InvalidRequest, PayloadTooLarge

from .errors import validation_error

T = TypeVar("T")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode_body(request: Request, type_: type[T]) -> T:
    limit = request.app.state.loom.config.daemon.limits.max_body_bytes
    body = await read_body(request, limit)
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.MsgspecError as e:
        raise validation_error(e) from None
