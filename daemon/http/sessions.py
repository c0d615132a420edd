"""Who may use /ui: the API's keys, through a login form and an HttpOnly session cookie.

With no keys configured /ui is open, like /v1. With keys, a person signs in with a key once; the
cookie then holds ``role.expiry.fingerprint.signature``, never the key: the fingerprint is an
HMAC of the key, so removing a key from the config ends its sessions, and the signature (HMAC
with the UI's secret) makes the cookie unforgeable. The secret lives in ``<data_dir>/ui.secret``
(mode 0600, written atomically) so sessions and CSRF tokens survive a restart. A client may also
send the key as ``Authorization: Bearer`` (scripts, tests). Admin pages and actions need an admin
key, as /admin.

:class:`Sessions` is one of the daemon's services (``sessions``), built with the others; the
/ui router's guard (:func:`session_guard`) is made from it once, and records who the caller is
(:class:`Viewer`) for the pages to show what that caller may do, and the caller's principal, so
the pages show a user its own jobs and evaluations only (all of them to an admin), as the API does.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.types import Guard
from loom.sdk.errors import AuthenticationFailed, PermissionDenied

from ..atomic import secret_file
from ..keys import KeyRing
from ..principals import LOCAL, Principal, set_principal
from .client_key import presented_key

COOKIE = "loom_session"
COOKIE_PATH = "/ui"
SESSION_S = 7 * 24 * 3600
SECRET_FILE = "ui.secret"


class LoginRequired(NotAuthorizedException):
    """No valid session: pages redirect to the login form."""


def load_secret(data_dir: Path) -> bytes:
    """The UI's signing secret (:func:`~loom.daemon.atomic.secret_file`)."""
    return secret_file(Path(data_dir) / SECRET_FILE)


def derive(secret: bytes, purpose: str) -> str:
    """One key per use of the secret (sessions, CSRF), so neither can stand in for the other."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, secret: bytes, ring: KeyRing) -> None:
        self._key = derive(secret, "session").encode()
        #: The CSRF middleware's secret (its own, derived from the same file).
        self.csrf_secret = derive(secret, "csrf")
        self.ring = ring

    @classmethod
    def open(cls, data_dir: Path, ring: KeyRing) -> Sessions:
        """The sessions of the UI served from ``data_dir`` (its secret made there on first start)."""
        return cls(load_secret(data_dir), ring)

    @property
    def enabled(self) -> bool:
        return self.ring.enabled

    def _fingerprint(self, key: bytes) -> str:
        return hmac.new(self._key, b"key:" + key, hashlib.sha256).hexdigest()[:32]

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key: str) -> str | None:
        """A session token for a valid key, else None."""
        role = self.ring.role_of(key)
        if role is None:
            return None
        payload = f"{role}.{int(time.time()) + SESSION_S}.{self._fingerprint(key.encode())}"
        return f"{payload}.{self._sign(payload)}"

    def principal_of(self, token: str | None) -> Principal | None:
        """The principal a session cookie stands for, while its key is configured with its role."""
        if not token or token.count(".") != 3:
            return None
        payload, signature = token.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        role, expiry, fingerprint = payload.split(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return None
        # The key must still be configured, with the same role.
        live = {self._fingerprint(key): p for key, p in self.ring.keys if p.role == role}
        return live.get(fingerprint)

    def role_of(self, token: str | None) -> str | None:
        found = self.principal_of(token)
        return found.role if found else None

    def principal_for(self, connection: ASGIConnection) -> Principal | None:
        """The caller: the session cookie, else a key (or JWT) in the headers; a JWT that does
        not hold counts as none (the page asks to sign in)."""
        found = self.principal_of(connection.cookies.get(COOKIE))
        if found is None:
            try:
                found = self.ring.principal(presented_key(connection))
            except AuthenticationFailed:
                found = None
        return found


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page, for the templates: whether keys are on, and the caller's role
    ("admin", "user", or None: keys off, or not signed in)."""

    keys_on: bool
    role: str | None

    @property
    def is_admin(self) -> bool:
        """Admin actions (load, unload, switch) as /admin allows them: anyone when keys are off."""
        return not self.keys_on or self.role == "admin"


#: Where the guard leaves the caller's :class:`Viewer` (the request's own state, not the app's).
VIEWER = "ui_viewer"


def session_guard(sessions: Sessions) -> Guard:
    """The /ui router's guard; ``opt={"public": True}`` opens a route (login, static files),
    ``opt={"admin": True}`` needs an admin key."""

    def require_session(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        principal = sessions.principal_for(connection) if sessions.enabled else LOCAL
        role = principal.role if principal is not None and sessions.enabled else None
        connection.state[VIEWER] = Viewer(keys_on=sessions.enabled, role=role)
        if principal is not None:
            set_principal(connection, principal)
        if not sessions.enabled or handler.opt.get("public"):
            return
        if principal is None:
            raise LoginRequired("Sign in with an API key")
        if handler.opt.get("admin") and not principal.is_admin:
            raise PermissionDenied("This needs an admin key")

    return require_session


def viewer_of(connection: ASGIConnection) -> Viewer:
    """The caller as the guard saw them; a request the guard did not see (an unknown /ui path)
    is shown as signed out."""
    return connection.state.get(VIEWER) or Viewer(keys_on=True, role=None)
