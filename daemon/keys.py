"""API keys: user keys for /v1, admin keys for /admin; compared in constant time, never logged.

The key ring is core state (resolved from the config once); the HTTP guards that consult it live
in :mod:`loom.daemon.api.auth`.
"""

from __future__ import annotations

import hmac
import secrets
import time

from .config import Config, Role


class KeyRing:
    """The configured keys, resolved from the environment once at start-up."""

    def __init__(self, config: Config) -> None:
        self.keys: list[tuple[bytes, Role]] = [(k.key.resolve().encode(), k.role) for k in config.daemon.api_keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def role_of(self, presented: str | None) -> Role | None:
        if presented is None:
            return None
        candidate = presented.encode()
        role: Role | None = None
        # Compare against every key so timing does not reveal which one matched.
        for key, key_role in self.keys:
            if hmac.compare_digest(candidate, key) and role != "admin":
                role = key_role
        return role


class StreamTokens:
    """Short-lived tokens for clients that cannot send a header: a browser's ``EventSource`` and
    ``WebSocket``. An authenticated ``POST /v1/stream-tokens`` mints one carrying the role of the
    key that asked; the stream routes take it as ``?token=`` or as the WebSocket subprotocol
    ``loom.bearer.<token>``. A key itself never has to go in a URL (where logs keep it), and a
    leaked token is worth ``ttl`` seconds. Tokens live in memory: a restart forgets them."""

    PREFIX = "lst_"

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._tokens: dict[str, tuple[Role, float]] = {}

    def mint(self, role: Role) -> tuple[str, float]:
        """A new token for ``role`` and when it expires (unix seconds)."""
        self._forget_expired()
        token = self.PREFIX + secrets.token_urlsafe(24)
        expires = time.time() + self.ttl
        self._tokens[token] = (role, expires)
        return token, expires

    def role_of(self, token: str | None) -> Role | None:
        if not token or not token.startswith(self.PREFIX):
            return None
        found = self._tokens.get(token)
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def _forget_expired(self) -> None:
        now = time.time()
        for token in [t for t, (_, expires) in self._tokens.items() if expires < now]:
            del self._tokens[token]
