"""``POST /v1/stream-tokens``: a short-lived token for a browser's event streams and WebSockets.

A page that holds a key sends it in a header here and gets a token it may put where a header
cannot go: ``GET /v1/jobs/{job_id}/events?token=...`` (``EventSource``), or the WebSocket
subprotocol ``loom.bearer.<token>`` (``new WebSocket(url, ["loom", "loom.bearer." + token])``).
The token acts for the principal that minted it, with its role (an admin's opens
``/admin/events`` too; a user's follows that user's own jobs only).
"""

from __future__ import annotations

from typing import Literal

from litestar import Request, Response, post
from litestar.di import NamedDependency
from msgspec import Struct

from ..config import Role
from ..keys import StreamTokens
from ..principals import principal_of
from .openapi import doc
from .respond import json_response


class StreamToken(Struct):
    object: Literal["stream_token"]
    token: str
    role: Role
    expires_at: float
    expires_in: float


@post(
    "/stream-tokens",
    status_code=201,
    operation_class=doc("Mint a token for event streams and WebSockets", returns=StreamToken, status=201),
)
async def mint_stream_token(request: Request, tokens: NamedDependency[StreamTokens]) -> Response:
    # With no keys configured every route is open: the token is the one (admin) principal's.
    principal = principal_of(request)
    token, expires = tokens.mint(principal)
    body = StreamToken(
        object="stream_token", token=token, role=principal.role, expires_at=expires, expires_in=tokens.ttl
    )
    return json_response(body, status_code=201)
