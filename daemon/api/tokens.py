"""``POST /v1/stream-tokens``: a short-lived token for a browser's event streams and WebSockets.

A page that holds a key sends it in a header here and gets a token it may put where a header
cannot go: ``GET /v1/jobs/{job_id}/events?token=...`` (``EventSource``), or the WebSocket
subprotocol ``loom.bearer.<token>`` (``new WebSocket(url, ["loom", "loom.bearer." + token])``).
The token has the role of the key that minted it (an admin's opens ``/admin/events`` too).
"""

from __future__ import annotations

from typing import Literal

from litestar import Request, Response, post
from litestar.di import NamedDependency
from msgspec import Struct

from ..config import Role
from ..http.client_key import presented_key
from ..keys import KeyRing, StreamTokens
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
async def mint_stream_token(
    request: Request, keys: NamedDependency[KeyRing], tokens: NamedDependency[StreamTokens]
) -> Response:
    # With no keys configured every route is open: the token is an admin's, like everyone.
    role = keys.role_of(presented_key(request)) if keys.enabled else "admin"
    token, expires = tokens.mint(role or "user")
    body = StreamToken(
        object="stream_token", token=token, role=role or "user", expires_at=expires, expires_in=tokens.ttl
    )
    return json_response(body, status_code=201)
