"""Principals: who a request acts for, and which stored things are theirs.

Every credential belongs to a principal: an API key to the one its ``[[daemon.api_keys]]`` entry
names (``principal``, else ``name``, else ``key-`` and a digest of the key: stable, and the key
itself is never kept), a JWT to its ``sub`` (:mod:`loom.daemon.jwts`). The key guard
(:mod:`loom.daemon.api.auth`) resolves the principal once per request and leaves it on the
connection; :func:`principal_of` reads it back. A daemon without keys has one principal,
:data:`LOCAL`, which is the admin.

Jobs (their files, events and lineage), stored responses, evaluations, persona records and
retrieval items are stored with their maker's name in an ``owner`` column. A user sees and acts
on its own only: a store asked with ``owner=principal.scope`` answers another's id as if it did
not exist (404, never 403, so ids do not leak) and lists only its own; an admin's ``scope`` is
None, which filters nothing.

Data stored before owners existed (no owner, or the key digest the job queue used to count by)
is owned by :data:`UNOWNED`: no principal's name, so only admins see it. Each store moves such
rows there once, when it opens (``PRAGMA user_version`` marks the store as done).
"""

from __future__ import annotations

import contextvars
import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs

from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Receive, Scope, Send
from loom.sdk.errors import AuthenticationFailed

from .config import Role

#: The owner of what no principal made: rows from before owners existed, and everything a daemon
#: without keys makes. No credential resolves to it (a name is never empty), so only admins see it.
UNOWNED = ""

#: Where the guard leaves the request's principal (the connection's own state).
STATE_KEY = "loom_principal"
#: The principal the running request acts for, for code that has no connection to ask (a file a
#: request names by its URL, read deep in the chat intake). Set by the key guard; None outside a
#: keyed request (a job resumed at start-up, a daemon without keys), which nothing filters.
acting: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("loom_acting_principal", default=None)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a name (what stored rows are owned by) and a role."""

    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> str | None:
        """The owner a store filters by: this principal's name, or None (everything) for an admin."""
        return None if self.is_admin else self.name

    def owns(self, owner: str | None) -> bool:
        """Whether this principal may see and act on something ``owner`` made."""
        return self.is_admin or (owner or UNOWNED) == self.name


#: The one principal of a daemon without keys: single-user, so the admin (as /admin is open too).
LOCAL = Principal(name=UNOWNED, role="admin")


def key_principal(key: str, name: str = "") -> str:
    """The principal a static key belongs to: its configured name, else one derived from a
    digest of the key (stable across restarts; the key cannot be read back from it)."""
    return name or "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def principal_of(connection: ASGIConnection) -> Principal:
    """The principal the guard resolved for this request. A route that no key guard saw (keys
    on, but a public or signed route) has none: asking is a 401, never a silent admin."""
    found = connection.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(found, Principal):
        raise AuthenticationFailed("This request carries no credential")
    return found


def set_principal(connection: ASGIConnection, principal: Principal) -> None:
    connection.state[STATE_KEY] = principal


def owner_folder(folder: str, owner: str) -> str:
    """The folder a principal's generated files go in (``images/u-<digest>``), so a file's path
    says whose it is; what no principal made stays in ``folder`` itself."""
    return folder if owner == UNOWNED else f"{folder}/{owner_tag(owner)}"


def owner_tag(owner: str) -> str:
    return "u-" + hashlib.sha256(owner.encode()).hexdigest()[:16]


def may_read_file(principal: Principal, rel: str, owner_of_output: Callable[[str], str | None]) -> bool:
    """Whether ``principal`` may read the served file (or folder) ``rel`` without a signed URL.

    A job's output folder (``output/<date>/<folder>/...``) is its job's owner's (asked of the job
    store by ``owner_of_output``); a generated image (``images/[rag/]u-<tag>/...``) is the maker
    its folder names (:func:`owner_folder`); anything else (files from before owners existed,
    what no principal made, the folders above) is an admin's. A signed URL is a capability: the
    route serves it to whoever holds it, without asking here."""
    if principal.is_admin:
        return True
    parts = posixpath.normpath("/" + rel).strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "output":
        return owner_of_output("/".join(parts[:3])) == principal.name
    if parts[0] == "images":
        return owner_tag(principal.name) in parts[1:3]
    return False


class Signatures(Protocol):
    def allows(self, path: str, exp: str | None, sig: str | None) -> bool: ...


def file_reader(signer: Signatures | None, owner_of_output: Callable[[str], str | None]) -> Callable[[str, str], bool]:
    """The check for a file a request names by its URL (``/v1/files/<rel>?<query>``: an image to
    look at, edit or index): the caller reads it as the files route would serve it to them, by a
    valid signature (a capability, whoever holds it) or by :func:`may_read_file`."""

    def may_read(rel: str, query: str) -> bool:
        principal = acting.get()
        if principal is None or principal.is_admin:
            return True
        q = parse_qs(query)
        exp = q["exp"][0] if "exp" in q else None
        sig = q["sig"][0] if "sig" in q else None
        if signer is not None and signer.allows("/v1/files/" + rel, exp, sig):
            return True
        return may_read_file(principal, rel, owner_of_output)

    return may_read


def single_user(app: ASGIApp) -> ASGIApp:
    """ASGI middleware of a daemon without keys (and so without guards): every request is
    :data:`LOCAL`'s."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})[STATE_KEY] = LOCAL
        await app(scope, receive, send)

    return middleware
