"""The running daemon's models follow its config file: added, removed and reloaded without a restart.

``POST /admin/models`` recognises a source and adds a ``[[models]]`` entry; ``DELETE
/admin/models/{id}`` removes one; ``POST /admin/models/reload`` takes in hand edits. Each builds
the new text, plans the change against the registry (every new entry built and checked as at
start-up, routes and fallbacks still pointing at models that exist), writes the file, then
applies the plan: removed models stop taking work, finish what runs and unload; new ones join
the registry and the scheduler. Nothing is written when the plan fails.

Only ``[[models]]`` is taken in while running; other sections (daemon, routes, plugins) need a
restart, and a reload says so when they changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from loom.sdk.errors import ConfigError, Conflict, InvalidRequest, PluginError

from .. import config_file
from ..config import Config
from ..models import ModelEntry, ModelRegistry, build_entry, check_references
from . import edits

if TYPE_CHECKING:
    from loom.sdk.protocols import Provider

    from ..plugin_manager import PluginInfo
    from ..routing import ModelRouter
    from ..scheduler import Scheduler

log = logging.getLogger("loom.catalog")


@dataclass
class Plan:
    config: Config  # the running config with the new [[models]]
    remove: list[ModelEntry] = field(default_factory=list)
    add: list[ModelEntry] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        removed = {e.id for e in self.remove}
        added = {e.id for e in self.add}
        return {
            "added": sorted(added - removed),
            "removed": sorted(removed - added),
            "changed": sorted(added & removed),
            "restart_needed": self.restart_needed,
        }


class ModelCatalog:
    """Adds, removes and reloads the daemon's configured models; one change at a time.

    ``config`` is the running config: the one Loom started with, its ``models`` kept current.
    """

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        registry: ModelRegistry,
        scheduler: Scheduler,
        router: ModelRouter,
        providers: dict[str, tuple[str, type[Provider]]],
        plugins: dict[str, PluginInfo],
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.registry = registry
        self.scheduler = scheduler
        self.router = router
        self.providers = providers
        self.plugins = plugins
        self._lock = asyncio.Lock()

    def _path(self) -> Path:
        if self.config_path is None:
            raise Conflict("this daemon was started without a config file, so it has none to add models to")
        return self.config_path

    def _read(self) -> str:
        path = self._path()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as e:
            raise Conflict(f"cannot read the config file {path}: {e.strerror or e}") from None

    def _write(self, text: str) -> None:
        path = self._path()
        try:
            config_file.write_atomic(path, text)
        except OSError as e:
            raise Conflict(f"cannot write the config file {path}: {e.strerror or e}") from None

    async def add(self, req: edits.AddModel) -> ModelEntry:
        async with self._lock:
            detected, _ = await asyncio.to_thread(edits.detect_source, req.source, req.file)
            model = edits.model_for(req, detected)
            text = self._read()
            new = edits.text_with(text, str(self.config_path), model, edits.note_for(req), self._taken())
            plan = self.plan(new)
            self._write(new)
            await self.apply(plan)
            log.info("added model %s (%s) from %s", model["id"], model["provider"], req.source)
            return self.registry.get(model["id"])

    async def remove(self, model_id: str) -> dict[str, Any]:
        async with self._lock:
            entry = self.registry.get(model_id)  # 404 for a name it does not know
            if entry.source != "config":
                raise Conflict(
                    f"model '{entry.id}' is registered by the plugin '{entry.source}', not the config; "
                    f"disable that plugin ([plugins.{entry.source}] enabled = false) to drop it"
                )
            new = edits.text_without(self._read(), str(self.config_path), entry.id)
            plan = self.plan(new)
            self._write(new)
            await self.apply(plan)
            log.info("removed model %s", entry.id)
            return plan.summary()

    async def edit(self, change: Callable[[str, str], str]) -> dict[str, Any]:
        """Apply ``change(text, source)`` to the config file's text, as an add or a remove is
        applied: planned, written, then taken in (``POST /api/copy`` adds an alias this way)."""
        async with self._lock:
            new = change(self._read(), str(self.config_path))
            plan = self.plan(new)
            self._write(new)
            await self.apply(plan)
            return plan.summary()

    async def reload(self) -> dict[str, Any]:
        async with self._lock:
            plan = self.plan(self._read())
            await self.apply(plan)
            return plan.summary()

    def _taken(self) -> set[str]:
        """Names in use by models the config does not declare (plugins')."""
        return {n for e in self.registry if e.source != "config" for n in (e.id, *e.config.aliases)}

    def plan(self, text: str) -> Plan:
        """What changes if the registry follows ``text``; InvalidRequest when it cannot."""
        try:
            wanted = edits.decode_models(text, str(self.config_path))
            running = msgspec.structs.replace(self.config, models=wanted.models)
            current = {e.id: e for e in self.registry if e.source == "config"}
            plan = Plan(config=running)
            scratch = ModelRegistry()  # the registry as it will be, to check names and references
            for e in self.registry:
                if e.source != "config":
                    scratch.add(e)
            for i, model in enumerate(wanted.models):
                old = current.get(model.id)
                if old is not None and old.config == model:
                    scratch.add(old)
                    continue
                entry = build_entry(running, self.providers, self.plugins, model, f"$.models[{i}]")
                self._check_device(entry)
                scratch.add(entry)
                plan.add.append(entry)
                if old is not None:
                    plan.remove.append(old)
            kept = {m.id for m in wanted.models}
            plan.remove += [e for model_id, e in current.items() if model_id not in kept]
            check_references(running, scratch)
        except (ConfigError, PluginError) as e:
            raise InvalidRequest(f"{e} (nothing was changed)") from None
        plan.restart_needed = [s for s in RESTART_SECTIONS if _section(wanted, s) != _section(self.config, s)]
        return plan

    def _check_device(self, entry: ModelEntry) -> None:
        scheduler = self.scheduler
        if not scheduler.knows_device(entry):
            device = scheduler.device_of(entry)
            raise ConfigError(
                f"model {entry.id!r}: device {device!r} was not set up when Loom started; restart Loom to use it"
            )

    async def apply(self, plan: Plan) -> None:
        for entry in plan.remove:
            await self.scheduler.remove_model(entry)
            self.registry.remove(entry.id)
            self.router.forget(entry.id)
        for entry in plan.add:
            self.registry.add(entry)
            self.scheduler.add_model(entry)
        self.config = plan.config


#: Sections a reload does not take in. ``daemon``'s host, port and data_dir are left out of the
#: comparison: the command line may override them.
RESTART_SECTIONS = ("daemon", "jobs", "scheduler", "routes", "plugins")


def _section(config: Config, name: str) -> Any:
    value = msgspec.to_builtins(getattr(config, name))
    if name == "daemon":
        for key in ("host", "port", "data_dir"):
            value.pop(key, None)
    return value
