"""API keys: user keys for /v1, admin keys for /admin; compared in constant time, never logged.

The key ring is core state (resolved from the config once); the HTTP guards that consult it live
in :mod:`loom.daemon.api.auth`.
"""

from __future__ import annotations

import hmac

from .config import Config


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
