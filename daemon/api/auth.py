"""API keys: user keys for /v1, admin keys for /admin; compared in constant time, never logged."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from loom.sdk.errors import AuthenticationFailed, PermissionDenied

from ..config import Config


class KeyRing:
    """The configured keys, resolved from the environment once at start-up."""

    def __init__(self, config: Config) -> None:
        self.keys: list[tuple[bytes, str]] = [(k.key.resolve().encode(), k.role) for k in config.daemon.api_keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def role_of(self, presented: str | None) -> str | None:
        if presented is None:
            return None
        candidate = presented.encode()
        role = None
        # Compare against every key so timing does not reveal which one matched.
        for key, key_role in self.keys:
            if hmac.compare_digest(candidate, key) and role != "admin":
                role = key_role
        return role


def presented_key(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.headers.get("x-api-key")


def require_key(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard for /v1 (any key) and /admin (admin key: ``opt={"admin": True}``)."""
    ring: KeyRing = connection.app.state.loom.keys
    if not ring.enabled:
        return
    role = ring.role_of(presented_key(connection))
    if role is None:
        raise AuthenticationFailed("Missing or incorrect API key: pass it as 'Authorization: Bearer <key>'")
    if handler.opt.get("admin") and role != "admin":
        raise PermissionDenied("This route needs an admin key")
