"""HTTP routes from plugins: the ``register_routes`` hook's contract.

A plugin contributes Litestar route handlers (``@get``, ``@post``, ``@websocket``, ``@asgi``
mounts, or a ``Router`` of them) under paths it names, as datasette's ``register_routes`` does::

    from litestar import Request, post
    from loom.sdk import hookimpl


    @hookimpl
    def register_routes(register, loom, options):
        @post("/acme/start", include_in_schema=False)
        async def start(request: Request) -> dict:
            body = await request.json()
            job = await loom.start_job("story", {"prompt": body["prompt"]})
            return {"id": job["id"]}

        register(start)

``loom`` is a :class:`RouteContext`: what a plugin's handlers may ask of the daemon (start jobs,
read them and follow their events, read and save files, run an image or a score). It is also
injected into every plugin handler that declares ``loom: NamedDependency[RouteContext]``.
``options`` is the plugin's decoded ``PluginOptions`` (None without one). Plugin routes sit
behind the same key guard as ``/v1`` (any key; a handler with ``opt={"browser": True}`` also
takes a stream token as ``?token=``; one with ``opt={"public": True}`` has no guard and checks its
own credential, e.g. a signed URL). They speak their own dialects: leave them out of Loom's
OpenAPI document (``include_in_schema=False``) unless you document them.

Start-up refuses a plugin route whose path is one of Loom's own (anything under
:data:`RESERVED_PREFIXES`) or one another plugin already claimed, naming both.
:func:`route_claims` is the check both the daemon and the conformance kit run.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from .protocols import VisionScores

#: Paths Loom serves itself: a plugin route may not be one of them or lie under one.
RESERVED_PREFIXES = ("/v1", "/admin", "/ui", "/docs", "/metrics", "/health", "/schema")
_PARAM = re.compile(r"\{[^}]*\}")


class JobEvent(msgspec.Struct, frozen=True):
    """One job event, as ``GET /v1/jobs/{id}/events`` sends it: ``type`` is ``state``
    (``data.state``; the last event of a finished job), ``progress`` (``data.progress`` 0-100,
    ``data.stage``, ``data.message``), ``step``, or the pipeline's own (``lineage``, ...)."""

    job_id: str
    id: int
    type: str
    data: dict[str, Any]
    created_at: float


@runtime_checkable
class RouteContext(Protocol):
    """What a plugin's routes may ask of the daemon; implemented by the daemon, handed to
    ``register_routes`` and injected as ``loom``. Errors are :mod:`loom.sdk.errors` classes
    (``NotFound``, ``InvalidRequest``, ...): a plugin answers them in its own dialect."""

    def pipelines(self) -> list[str]:
        """The names of the pipelines this daemon runs."""

    async def start_job(
        self, pipeline: str, params: Mapping[str, Any], *, upstream_keys: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Start a job, as ``POST /v1/pipelines/{pipeline}`` does: ``params`` are decoded strictly
        (``InvalidRequest`` / ``UnsupportedParameter`` name the field; an unknown model is
        ``ModelNotFound``; an unknown pipeline ``NotFound``). ``upstream_keys`` are per-request
        keys for the job's remote calls, by header name (``{"x-openai-api-key": "sk-..."}``),
        never stored. Returns the job as ``GET /v1/jobs/{id}`` shows it."""

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job as ``GET /v1/jobs/{id}`` shows it (``state``, ``progress``, ``stage``,
        ``result``, ``error``, ``artifacts``, ``output_dir``, ...), or None."""

    def list_jobs(self, *, pipeline: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Jobs, newest first, as ``GET /v1/jobs`` lists them (with ``result``)."""

    async def wait_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        """The job once it has finished, or as it is after ``timeout`` seconds."""

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a job (``Conflict`` if it already finished); returns it."""

    def follow(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events after event id ``after`` (all by default), then new ones as they
        come, ending after its final ``state`` event (or when the daemon stops). Past events
        are replayed from the store, so nothing is missed between ``start_job`` and this."""

    def read_file(self, path: str) -> bytes:
        """A file Loom serves at ``/v1/files/<path>`` (relative to the data dir, or absolute
        inside it); ``NotFound`` for anything else."""

    def file_path(self, path: str) -> Path:
        """Where such a file is on disk (absolute); ``NotFound`` as :meth:`read_file`."""

    def save_file(self, data: bytes, suffix: str = ".png") -> str:
        """Store ``data`` under ``images/<date>/`` with an unguessable name; its relative path."""

    def file_url(self, path: str, *, expires_in: float | None = None) -> str:
        """A URL for a file Loom serves. ``expires_in``: a URL a browser can open without a key
        (an ``<img>`` tag), valid that many seconds, where the daemon signs URLs; otherwise the
        plain ``/v1/files/<path>``."""

    def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        """A named record (``personas``: what ``GET /v1/personas/{name}`` reads): ``key``,
        ``data``, ``created_at``, ``updated_at``; None if there is none."""

    def models(self) -> list[dict[str, Any]]:
        """The configured models: ``id``, ``provider``, ``capabilities``, ``local``."""

    def model_for(self, role: str, requested: str | None = None) -> str:
        """The model serving a role (``chat``, ``image``, ``vision``, ``score``, ...): the
        requested one if it can, else ``[routes]``, else the first able model."""

    async def generate_image(
        self,
        prompt: str,
        *,
        model: str | None = None,
        width: int = 512,
        height: int = 512,
        steps: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
    ) -> bytes:
        """One PNG from the image model (``[routes].image`` by default), through the scheduler."""

    async def score(self, image: bytes, text: str, *, model: str | None = None) -> VisionScores:
        """CLIP alignment (0..1) and aesthetic rating (0..10) of an image for a text."""


def normalize_path(path: str) -> str:
    """A path with its parameters blanked (``/job/{id:str}`` -> ``/job/{}``) and no trailing slash."""
    path = _PARAM.sub("{}", path)
    return path.rstrip("/") or "/"


def reserved(path: str) -> str | None:
    """The reserved prefix ``path`` lies under, or None."""
    p = normalize_path(path)
    return next((r for r in RESERVED_PREFIXES if p == r or p.startswith(r + "/")), None)


def handler_paths(item: Any) -> Iterable[str]:
    """The full paths a route handler or a Router serves."""
    from litestar import Router
    from litestar.handlers import BaseRouteHandler

    if isinstance(item, Router):
        return [route.path for route in item.routes]
    if isinstance(item, BaseRouteHandler):
        return sorted(item.paths)
    raise TypeError(f"not a Litestar route handler or Router: {item!r}")


def route_claims(items: Iterable[Any]) -> tuple[list[str], list[str]]:
    """The normalised paths one plugin's registered items claim, and what is wrong with them
    (not a route handler, a relative path, a path of Loom's own)."""
    claims: list[str] = []
    problems: list[str] = []
    for item in items:
        try:
            paths = handler_paths(item)
        except TypeError as e:
            problems.append(str(e))
            continue
        for path in paths:
            if not path.startswith("/"):
                problems.append(f"path {path!r} must start with '/'")
                continue
            prefix = reserved(path)
            if prefix is not None:
                problems.append(f"path {path!r} is Loom's own (everything under {prefix} is)")
                continue
            if normalize_path(path) not in claims:
                claims.append(normalize_path(path))
    return claims, problems
