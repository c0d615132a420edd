"""Per-request upstream keys: ``X-<Service>-API-Key`` headers a client sends for remote providers.

A remote instance may accept a key per request (``user_key_header`` in the openai plugin, the
seed's ``X-OpenAI-API-Key``) so that each user pays for their own calls. The daemon takes every
header named ``X-<name>-API-Key`` off the incoming request (``X-API-Key`` itself is the daemon's
own key, not an upstream one) and hands them to providers in ``RunContext.credentials``:

- for the ``/v1`` routes, :func:`middleware` keeps them in a context variable for the request's
  task, and the scheduler copies them onto each call it submits from that task;
- for a pipeline job, the route passes them to the job runner, which holds them in memory for the
  job's run only and gives them to every call of that job (the job task itself starts in a
  context without them, so nothing leaks in implicitly).

They are never logged, stored (not in SQLite, not in ``metadata.json``) or shown; a job records
only the header *names* it was started with, so it can say which headers a resume needs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from loom.sdk.config import UPSTREAM_KEY_HEADER as HEADER

_EMPTY: Mapping[str, str] = MappingProxyType({})
_current: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("loom_upstream_keys", default=_EMPTY)


def from_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """The upstream keys among ``headers`` (lower-case name -> value); blank values are skipped."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    keys: dict[str, str] = {}
    for name, value in items:
        name = name.lower()
        if HEADER.match(name) and value.strip():
            keys[name] = value.strip()
    return keys


def current() -> dict[str, str]:
    """The upstream keys of the request this task serves (empty outside a request)."""
    return dict(_current.get())


def detached_context() -> contextvars.Context:
    """A copy of the current context without request keys: what a background task starts in."""
    context = contextvars.copy_context()
    context.run(_current.set, _EMPTY)
    return context


def middleware(app):
    """ASGI middleware: the request's upstream keys are :func:`current` while it is served."""

    async def with_keys(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        # Only names ending in -api-key are decoded and matched (servers send them lower-case):
        # most requests carry none, and this runs for every request.
        keys = from_headers(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope.get("headers", ())
            if k[-8:].lower() == b"-api-key"
        )
        if not keys:
            return await app(scope, receive, send)
        token = _current.set(MappingProxyType(keys))
        try:
            return await app(scope, receive, send)
        finally:
            _current.reset(token)

    return with_keys
