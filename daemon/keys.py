"""Credentials: static API keys (user keys for /v1, admin keys for /admin; compared in constant
time, never logged) and, with ``[daemon.jwt]``, JWT bearer tokens (:mod:`loom.daemon.jwts`).
Each resolves to a :class:`~loom.daemon.principals.Principal`.

The key ring is core state (resolved from the config once); the HTTP guards that consult it live
in :mod:`loom.daemon.api.auth`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import TYPE_CHECKING

from .config import Config, Role
from .principals import Principal, key_principal

if TYPE_CHECKING:
    from .jwts import JWTVerifier


def looks_like_jwt(credential: str) -> bool:
    """A compact JWS: three base64url parts, the first a JSON object (a static key rarely is)."""
    return credential.count(".") == 2 and credential.startswith("eyJ")


class KeyRing:
    """The configured keys, resolved from the environment once at start-up, and the JWT check."""

    def __init__(self, config: Config) -> None:
        self.keys: list[tuple[bytes, Principal]] = []
        for k in config.daemon.api_keys:
            key = k.key.resolve()
            self.keys.append((key.encode(), Principal(key_principal(key, k.principal or k.name), k.role)))
        self.jwt: JWTVerifier | None = None
        if config.daemon.jwt is not None:
            from .jwts import JWTVerifier  # PyJWT (and cryptography) only for a daemon that takes tokens

            self.jwt = JWTVerifier(config.daemon.jwt)

    @property
    def enabled(self) -> bool:
        return bool(self.keys) or self.jwt is not None

    def key_principal(self, presented: str | None) -> Principal | None:
        """The principal of a static key (None for anything else)."""
        if presented is None:
            return None
        candidate = presented.encode()
        found: Principal | None = None
        # Compare against every key so timing does not reveal which one matched.
        for key, principal in self.keys:
            if hmac.compare_digest(candidate, key) and (found is None or not found.is_admin):
                found = principal
        return found

    def role_of(self, presented: str | None) -> Role | None:
        found = self.key_principal(presented)
        return found.role if found else None

    def principal(self, presented: str | None) -> Principal | None:
        """The principal of a static key or a valid JWT; None when nothing was presented or it
        is no key. A JWT that does not hold is an AuthenticationFailed saying why."""
        found = self.key_principal(presented)
        if found is None and presented and self.jwt is not None and looks_like_jwt(presented):
            found = self.jwt.principal(presented)
        return found


class StreamTokens:
    """Short-lived tokens for clients that cannot send a header: a browser's ``EventSource`` and
    ``WebSocket``. An authenticated ``POST /v1/stream-tokens`` mints one carrying the principal
    (and so the role) of the credential that asked; the stream routes take it as ``?token=`` or as the WebSocket subprotocol
    ``loom.bearer.<token>``. A key itself never has to go in a URL (where logs keep it), and a
    leaked token is worth ``ttl`` seconds. Tokens live in memory: a restart forgets them."""

    PREFIX = "lst_"

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._tokens: dict[str, tuple[Principal, float]] = {}

    def mint(self, principal: Principal) -> tuple[str, float]:
        """A new token for ``principal`` and when it expires (unix seconds)."""
        self._forget_expired()
        token = self.PREFIX + secrets.token_urlsafe(24)
        expires = time.time() + self.ttl
        self._tokens[token] = (principal, expires)
        return token, expires

    def principal_of(self, token: str | None) -> Principal | None:
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
