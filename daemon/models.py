"""The model registry: every configured model, its provider class and its resolved options."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
from loom.sdk.config import ModelConfig
from loom.sdk.errors import CapabilityNotSupported, ConfigError, ModelNotFound, PluginError
from loom.sdk.protocols import ModelSpec, Provider
from loom.sdk.suggest import did_you_mean
from loom.sdk.types import Capability, ModelCard

from .config import VISION_ROLES, Config, SchedulerConfig, parse_duration, parse_size
from .plugin_manager import PluginInfo


@dataclass
class ModelEntry:
    """A configured model; ``provider`` is built lazily and owned by the scheduler."""

    config: ModelConfig
    provider_cls: type[Provider]
    plugin: str  # the plugin that registered the provider
    source: str  # where the model was declared: "config" or a plugin name
    spec: ModelSpec
    capabilities: frozenset[Capability]
    keep_alive: float | None
    vram_override: int | None
    created: int = field(default_factory=lambda: int(time.time()))
    provider: Provider | None = None
    #: Where the model runs when loaded ("inprocess", "subprocess", "ray"); see :func:`executor_for`.
    executor: str = "inprocess"
    #: Seconds a call may go without producing anything before it is killed (None: no limit).
    call_timeout: float | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def local(self) -> bool:
        return self.provider_cls.local

    def instance(self) -> Provider:
        """The provider object in the daemon's process: it estimates memory before a load, and
        serves the model itself when the model runs in process."""
        if self.provider is None:
            self.provider = self.provider_cls(self.spec)
        return self.provider

    def card(self) -> ModelCard:
        return ModelCard(
            id=self.id,
            created=self.created,
            owned_by=self.plugin,
            capabilities=sorted(c.value for c in self.capabilities),
            provider=self.spec.provider,
            aliases=list(self.config.aliases),
        )


class ModelRegistry:
    """Public ids and aliases -> :class:`ModelEntry`."""

    def __init__(self) -> None:
        self.entries: dict[str, ModelEntry] = {}
        self._names: dict[str, ModelEntry] = {}

    def add(self, entry: ModelEntry) -> None:
        for name in (entry.id, *entry.config.aliases):
            other = self._names.get(name)
            if other is not None:
                raise PluginError(
                    f"model name {name!r} is declared twice: by {other.source!r} "
                    f"(model {other.id!r}) and by {entry.source!r} (model {entry.id!r})"
                )
            self._names[name] = entry
        self.entries[entry.id] = entry

    def remove(self, model_id: str) -> ModelEntry:
        """Drop a model and its aliases (models added and removed while the daemon runs)."""
        entry = self.entries.pop(model_id)
        for name in (entry.id, *entry.config.aliases):
            if self._names.get(name) is entry:
                del self._names[name]
        return entry

    def get(self, name: str) -> ModelEntry:
        entry = self._names.get(name)
        if entry is None:
            # Ids and aliases match exactly, case included, as OpenAI's do; the nearest are named.
            hint = did_you_mean(name, self._names) or " (GET /v1/models lists them)"
            raise ModelNotFound(f"The model '{name}' does not exist{hint}", param="model")
        return entry

    def for_capability(self, name: str, capability: Capability) -> ModelEntry:
        entry = self.get(name)
        if capability not in entry.capabilities:
            have = ", ".join(sorted(c.value for c in entry.capabilities)) or "nothing"
            raise CapabilityNotSupported(
                f"The model '{name}' does not support {capability.value} (it supports: {have})",
                param="model",
            )
        return entry

    def first_with(self, capability: Capability) -> ModelEntry | None:
        return next((e for e in self.entries.values() if capability in e.capabilities), None)

    def __contains__(self, name: str) -> bool:
        """Whether ``name`` is a model id or alias."""
        return name in self._names

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


EXECUTORS = ("inprocess", "subprocess", "ray")


def executor_for(cls: type[Provider], model: ModelConfig, scheduler: SchedulerConfig, where: str) -> str:
    """Where a model runs: its own ``executor``, else its provider's preference, else
    ``[scheduler] executor``. Remote providers always run in the daemon's process: they only
    wait on the network, and their ``async`` methods run on its event loop."""
    if not cls.local:
        if model.executor not in (None, "inprocess"):
            raise ConfigError(
                f"{where}.executor: provider {model.provider!r} is remote; it runs in the daemon's process"
            )
        return "inprocess"
    preferred = cls.executor
    if preferred is not None and preferred not in EXECUTORS:
        raise PluginError(
            f"provider {model.provider!r} asks for executor {preferred!r} (known: {', '.join(EXECUTORS)})"
        )
    return model.executor or preferred or scheduler.executor


def call_timeout(model: ModelConfig, scheduler: SchedulerConfig, where: str) -> float | None:
    if model.call_timeout is not None:
        seconds = parse_duration(model.call_timeout, f"{where}.call_timeout")
    else:
        seconds = parse_duration(scheduler.call_timeout, "$.scheduler.call_timeout")
    return seconds if seconds else None  # "never", -1 and 0 mean no limit


def build_entry(
    config: Config,
    providers: dict[str, tuple[str, type[Provider]]],
    infos: dict[str, PluginInfo],
    model: ModelConfig,
    where: str,
    source: str = "config",
) -> ModelEntry:
    """One registry entry: the provider exists, its options decode, the capabilities fit."""
    if not isinstance(model, ModelConfig):
        raise PluginError(f"{where}: register_models must register ModelConfig, got {model!r}")
    if model.provider not in providers:
        raise ConfigError(
            f"{where}.provider: no provider named {model.provider!r} "
            f"(available: {', '.join(sorted(providers)) or 'none'})"
        )
    plugin, cls = providers[model.provider]
    try:
        options = msgspec.convert(model.options, cls.Options, strict=True)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{where}.options: {e}") from None
    capabilities = frozenset(cls.capabilities)
    if model.capabilities:
        extra = set(model.capabilities) - capabilities
        if extra:
            names = ", ".join(sorted(c.value for c in extra))
            raise ConfigError(f"{where}.capabilities: provider {model.provider!r} cannot do {names}")
        capabilities = frozenset(model.capabilities)
    spec = ModelSpec(
        id=model.id,
        provider=model.provider,
        options=options,
        plugin_options=infos[plugin].options,
        capabilities=capabilities,
        device=model.device,
        dtype=model.dtype,
        data_dir=str(config.data_dir / "models" / model.id),
        threads=model.threads,
    )
    return ModelEntry(
        config=model,
        provider_cls=cls,
        plugin=plugin,
        source=source,
        spec=spec,
        capabilities=capabilities,
        keep_alive=parse_duration(model.keep_alive, f"{where}.keep_alive"),
        vram_override=parse_size(model.vram, f"{where}.vram") if model.vram else None,
        executor=executor_for(cls, model, config.scheduler, where),
        call_timeout=call_timeout(model, config.scheduler, where),
    )


def check_references(config: Config, registry: ModelRegistry) -> None:
    """Every fallback and route names a model the registry has, with the capability asked for."""
    for i, model in enumerate(config.models):
        for fallback in model.fallbacks:
            if fallback not in registry:
                raise ConfigError(f"$.models[{i}].fallbacks: no model named {fallback!r}")
    for role in ("chat", "embedding", "image", "vision", "translation", "rerank", *VISION_ROLES):
        target = getattr(config.routes, role)
        if target is not None:
            capability = Capability(VISION_ROLES.get(role, role))
            if target not in registry:
                raise ConfigError(f"$.routes.{role}: no model named {target!r}")
            if capability not in registry.get(target).capabilities:
                raise ConfigError(f"$.routes.{role}: model {target!r} cannot do {capability.value}")


def build_registry(
    config: Config,
    providers: dict[str, tuple[str, type[Provider]]],
    plugin_models: list[tuple[str, ModelConfig]],
    infos: dict[str, PluginInfo],
) -> ModelRegistry:
    registry = ModelRegistry()
    declared = [(f"$.models[{i}]", "config", m) for i, m in enumerate(config.models)]
    declared += [(f"model {m.id!r} of plugin {p!r}", p, m) for p, m in plugin_models]
    for where, source, model in declared:
        registry.add(build_entry(config, providers, infos, model, where, source))
        if source != "config":
            infos[source].models.append(model.id)
    check_references(config, registry)
    return registry
