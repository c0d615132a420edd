"""The key guards: any configured key (or JWT) for /v1, an admin's for /admin and /metrics.

The guard resolves the request's :class:`~loom.daemon.principals.Principal` once and leaves it
on the connection, where routes read it with ``principal_of(request)`` (what is theirs to see).

Each guard is made once from the :class:`~loom.daemon.keys.KeyRing` and declared once, on its
Router (``app.py``), so no handler can forget it. A key comes as ``Authorization: Bearer <key>``
or ``X-API-Key``. The stream routes a browser opens (``EventSource`` and ``WebSocket`` send no
headers of their own) are marked ``opt={"browser": True}``; they also take a short-lived token
(:class:`~loom.daemon.keys.StreamTokens`, minted by ``POST /v1/stream-tokens``) as ``?token=``,
and a WebSocket takes a key or a token as the subprotocol ``loom.bearer.<credential>`` (offered
with ``loom``, which the server then accepts). The files route (``opt={"signed": True}``) takes a
signed URL instead of a key (``?exp=...&sig=...``, :mod:`loom.daemon.storage.signing`): an
``<img src>`` sends no header either.
"""

from __future__ import annotations

import asyncio

from litestar import WebSocket
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler
from litestar.types import Guard
from loom.sdk.errors import AuthenticationFailed, PermissionDenied

from ..http.client_key import presented_key
from ..keys import KeyRing, StreamTokens, looks_like_jwt
from ..principals import Principal, acting, set_principal
from ..quotas import Quotas, Refused, counts, hold, refused
from ..scheduler import current_principal
from ..storage.signing import URLSigner

#: The WebSocket subprotocol a browser offers alongside its credential (and the server accepts).
SUBPROTOCOL = "loom"
BEARER = "loom.bearer."


def subprotocol_credential(connection: ASGIConnection) -> str | None:
    scope = connection.scope
    if scope["type"] != ScopeType.WEBSOCKET:
        return None  # only a WebSocket handshake offers subprotocols
    for offered in scope.get("subprotocols") or ():
        if offered.startswith(BEARER):
            return offered[len(BEARER) :]
    return None


def signed(connection: ASGIConnection, signer: URLSigner | None) -> bool:
    """Whether the request's own signature lets it in (a 403 when it carries a bad one)."""
    if signer is None:
        return False
    q = connection.query_params
    return signer.allows(connection.scope["path"], q.get("exp"), q.get("sig"))


def key_guard(
    ring: KeyRing,
    tokens: StreamTokens,
    *,
    admin: bool,
    signer: URLSigner | None = None,
    quotas: Quotas | None = None,
) -> Guard:
    """A guard that lets a request through with any key (``admin=False``) or an admin key; with
    no keys configured, everything is open. With ``quotas``, a request that makes work takes a
    place in its principal's quota (:mod:`loom.daemon.quotas`) or is refused with a 429.

    The guard is ``async`` though it awaits nothing: Litestar runs a sync guard on a worker
    thread (``sync_to_thread``), a thread hop on every request for a few dictionary lookups."""

    async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        if not ring.enabled:
            return
        if handler.opt.get("signed") and signed(connection, signer):
            return  # a capability URL: the route serves it to whoever holds it
        principal = await resolve(ring, presented_key(connection))
        if principal is None and handler.opt.get("browser"):
            credential = subprotocol_credential(connection)
            principal = await resolve(ring, credential) or tokens.principal_of(credential)
            principal = principal or tokens.principal_of(connection.query_params.get("token"))
        if principal is None:
            raise AuthenticationFailed(
                "Missing or incorrect API key: pass it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        if admin and not principal.is_admin:
            raise PermissionDenied("This route needs an admin key")
        set_principal(connection, principal)
        # The calls this request queues are this principal's (fair share, per-principal metrics):
        # the guard runs in the request's own task, so the value lives as long as the request.
        current_principal.set(principal.name)
        acting.set(principal)
        if quotas is not None and counts(connection):
            try:
                hold(connection, quotas.admit(principal.name))
            except Refused as e:
                refused(connection, e)
                raise

    guard.__name__ = "require_admin_key" if admin else "require_key"
    return guard


async def resolve(ring: KeyRing, credential: str | None) -> Principal | None:
    """The principal of a key or JWT; a JWT whose key set is fetched from a URL is checked off
    the event loop (PyJWKClient may fetch it)."""
    if credential and ring.jwt is not None and ring.jwt.remote and looks_like_jwt(credential):
        return await asyncio.to_thread(ring.principal, credential)
    return ring.principal(credential)


async def accept(socket: WebSocket) -> None:
    """Accept a WebSocket, choosing the ``loom`` subprotocol when the client offered it (a browser
    that offered subprotocols closes a connection that picks none of them)."""
    offered = socket.scope.get("subprotocols") or ()
    await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)


def key_guards(
    ring: KeyRing,
    tokens: StreamTokens,
    *,
    admin: bool,
    signer: URLSigner | None = None,
    quotas: Quotas | None = None,
) -> list[Guard]:
    """The guards for a Router: :func:`key_guard`, or none when no keys are configured. The key
    ring is fixed at start-up, so an open daemon's guard would let everything through; Litestar
    still copies the route handler for every guarded request, which is worth skipping (the files
    route checks a signature it is sent itself, keys or not)."""
    if not ring.enabled:
        return []
    return [key_guard(ring, tokens, admin=admin, signer=signer, quotas=quotas if quotas and quotas.enabled else None)]
