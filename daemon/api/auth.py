"""The key guards: any configured key for /v1, an admin key for /admin and /metrics.

Each guard is made once from the :class:`~loom.daemon.keys.KeyRing` and declared once, on its
Router (``app.py``), so no handler can forget it.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import Guard

from loom.sdk.errors import AuthenticationFailed, PermissionDenied

from ..keys import KeyRing


def presented_key(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.headers.get("x-api-key")


def key_guard(ring: KeyRing, *, admin: bool) -> Guard:
    """A guard that lets a request through with any key (``admin=False``) or an admin key; with
    no keys configured, everything is open."""

    def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        if not ring.enabled:
            return
        role = ring.role_of(presented_key(connection))
        if role is None:
            raise AuthenticationFailed("Missing or incorrect API key: pass it as 'Authorization: Bearer <key>'")
        if admin and role != "admin":
            raise PermissionDenied("This route needs an admin key")

    guard.__name__ = "require_admin_key" if admin else "require_key"
    return guard
