"""The caller's principal for the work a request queues: the per-principal metrics' label.

Installed only when keys are configured (without keys every caller is the same one). The
principal is what :func:`~loom.daemon.api.jobs.owner_of` says a request's owner is, so a job and
the calls a request makes count for the same principal; the scheduler reads it from
:data:`~loom.daemon.scheduler.current_principal` when it queues each call.
"""

from __future__ import annotations

from litestar import Request
from litestar.types import ASGIApp, Receive, Scope, Send

from ..scheduler import current_principal
from .jobs import owner_of


def principal_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: the request's principal is current while it is served."""

    async def with_principal(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        token = current_principal.set(owner_of(Request(scope)))
        try:
            await app(scope, receive, send)
        finally:
            current_principal.reset(token)

    return with_principal
