"""Plugin routes (``register_routes``): the daemon's :class:`~loom.sdk.routes.RouteContext` and
the collection of what plugins register.

Each plugin's handlers are collected one plugin at a time (``collect``), their paths checked with
the SDK's :func:`~loom.sdk.routes.route_claims` (the conformance kit's check), and a path claimed
by two plugins stops start-up naming both. ``app.py`` mounts them in one Router behind the ``/v1``
key guard, with this context injected as ``loom``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pluggy
from loom.sdk import calls
from loom.sdk.errors import CapabilityNotSupported, InvalidRequest, NotFound, PluginError, ProviderError
from loom.sdk.protocols import ImageJob, VisionScores
from loom.sdk.routes import JobEvent, handler_paths, normalize_path, route_claims
from loom.sdk.types import Capability

from .. import credentials as upstream_keys
from ..config import VISION_ROLES, Routes
from ..files import FileStore
from ..jobs.runner import JobRunner
from ..jobs.store import TERMINAL
from ..models import ModelRegistry
from ..plugin_manager import PluginInfo, collect
from ..records import RecordStore
from ..routing import ModelRouter
from ..storage.signing import URLSigner
from .jobs import check_models, decode_params, job_view


class DaemonRouteContext:
    """The daemon's side of :class:`loom.sdk.routes.RouteContext`."""

    def __init__(
        self,
        *,
        runner: JobRunner,
        registry: ModelRegistry,
        router: ModelRouter,
        routes: Routes,
        files: FileStore,
        records: RecordStore,
        signer: URLSigner | None = None,
    ) -> None:
        self._runner, self._registry, self._router = runner, registry, router
        self._routes, self._files, self._records = routes, files, records
        self._signer = signer

    # --- jobs -------------------------------------------------------------------------------

    def pipelines(self) -> list[str]:
        return sorted(self._runner.pipelines)

    async def start_job(
        self, pipeline: str, params: Mapping[str, Any], *, upstream_keys: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        info = self._runner.pipeline(pipeline)
        decoded = decode_params(info, msgspec.json.encode(dict(params)))
        check_models(self._registry, decoded)
        keys = upstream_keys_of(upstream_keys or {})
        return job_view(self._runner, self._runner.submit(pipeline, decoded, keys))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        job = self._runner.store.get_job(job_id)
        return None if job is None else job_view(self._runner, job)

    def list_jobs(self, *, pipeline: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        rows = self._runner.store.list_jobs(pipeline=pipeline, limit=limit, offset=offset)
        return [job_view(self._runner, r) for r in rows]

    async def wait_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        return job_view(self._runner, await self._runner.wait(job_id, timeout))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return job_view(self._runner, await self._runner.cancel(job_id))

    async def follow(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        runner = self._runner
        runner.get(job_id)  # NotFound
        sub = runner.hub.subscriber()
        sub.watch(job_id, after)
        try:
            job = runner.store.get_job(job_id)
            if job is None or (job["state"] in TERMINAL and after >= runner.store.last_event_id(job_id)):
                return
            while True:
                events = await sub.next()
                if events is None:  # the daemon is stopping
                    return
                if not isinstance(events, list):
                    continue
                for e in events:
                    yield JobEvent(job_id=e.job_id, id=e.id, type=e.type, data=e.data, created_at=e.created_at)
                    final = e.type == "state" and e.data.get("state") in TERMINAL
                    if final and e.id >= runner.store.last_event_id(job_id):
                        return
        finally:
            sub.close()

    # --- files and records ------------------------------------------------------------------

    def file_path(self, path: str) -> Path:
        candidate = Path(path)
        if candidate.is_absolute():
            try:
                path = candidate.resolve().relative_to(self._files.root).as_posix()
            except ValueError:
                raise NotFound(f"No file at '{path}'", param="path") from None
        return self._files.resolve(path.lstrip("/"))

    def read_file(self, path: str) -> bytes:
        return self.file_path(path).read_bytes()

    def save_file(self, data: bytes, suffix: str = ".png") -> str:
        return self._files.save(data, suffix)

    def file_url(self, path: str, *, expires_in: float | None = None) -> str:
        self.file_path(path)  # NotFound for what Loom does not serve
        if expires_in is not None and self._signer is not None:
            return self._signer.sign(path, ttl=expires_in)  # opens without a key until it expires
        return f"/v1/files/{path}"

    def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        return self._records.get(collection, key, None)  # a plugin route acts for no one principal: any owner's

    # --- models -----------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        return [
            {
                "id": e.id,
                "provider": e.config.provider,
                "capabilities": sorted(c.value for c in e.capabilities),
                "local": e.local,
            }
            for e in self._registry
        ]

    def model_for(self, role: str, requested: str | None = None) -> str:
        fallback = VISION_ROLES.get(role)
        try:
            capability = Capability(fallback or role)
        except ValueError:
            raise InvalidRequest(f"unknown model role {role!r}") from None
        if requested:
            self._registry.for_capability(requested, capability)
            return requested
        route = getattr(self._routes, role, None) or (getattr(self._routes, fallback, None) if fallback else None)
        route = self._router.route_for(capability, route)
        if route:
            return route
        entry = self._registry.first_with(capability)
        if entry is None:
            raise CapabilityNotSupported(f"no configured model can do {capability.value} (for {role})")
        return entry.id

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
        name = self.model_for("image", model)
        job = ImageJob(
            prompt=prompt, width=width, height=height, n=1, seed=seed, steps=steps, negative_prompt=negative_prompt
        )
        _, images = await self._router.run(name, Capability.IMAGE, calls.GenerateImages(job=job))
        if not images:
            raise ProviderError(f"{name} returned no image")
        return images[0]

    async def score(self, image: bytes, text: str, *, model: str | None = None) -> VisionScores:
        name = self.model_for("score", model)
        _, scores = await self._router.run(name, Capability.VISION, calls.Score(image=image, text=text))
        return scores


def upstream_keys_of(keys: Mapping[str, str]) -> dict[str, str]:
    """Per-request upstream keys by header name, as the credentials middleware reads them."""
    return upstream_keys.from_headers(dict(keys))


def collect_routes(
    pm: pluggy.PluginManager, infos: dict[str, PluginInfo], loom: DaemonRouteContext, own: list[Any]
) -> list[Any]:
    """Every plugin's route handlers; a bad path, one of Loom's own routes (``own``: its route
    handlers and Routers), or one two plugins claim, stops start-up."""
    loom_paths = {normalize_path(path) for item in own for path in handler_paths(item)}
    by_plugin: dict[str, list[Any]] = {}

    def kwargs_for(plugin: str) -> dict[str, Any]:
        info = infos.get(plugin)
        return {"loom": loom, "options": info.options if info else None}

    for plugin, item in collect(pm, "register_routes", kwargs_for):
        by_plugin.setdefault(plugin, []).append(item)
    owner: dict[str, str] = {}
    handlers: list[Any] = []
    for plugin, items in by_plugin.items():
        claims, problems = route_claims(items)
        if problems:
            raise PluginError(f"plugin {plugin!r} registered routes Loom refuses: {'; '.join(problems)}")
        for path in claims:
            if path in loom_paths:
                raise PluginError(f"plugin {plugin!r} registered a route Loom serves itself: {path!r}")
            if path in owner:
                raise PluginError(f"route {path!r} is registered by two plugins: {owner[path]!r} and {plugin!r}")
            owner[path] = plugin
        if plugin in infos:
            infos[plugin].routes.extend(claims)
        handlers.extend(items)
    return handlers
