"""Discovering plugins and collecting what they register.

One plugin manager per app instance, made by :func:`make_plugin_manager`. Built-in plugins are
found through the ``loom`` entry-point group exactly like a third party's. Registration hooks are
called one implementation at a time so every registered name is traced to its plugin, and a
duplicate stops start-up naming both.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pluggy
from loom.sdk import hookspecs
from loom.sdk.calls import missing_methods
from loom.sdk.errors import ConfigError, PluginError
from loom.sdk.protocols import Provider

log = logging.getLogger("loom.plugins")
ENTRY_POINT_GROUP = "loom"


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    options: Any = None
    providers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)
    #: Paths of the HTTP routes it serves (``register_routes``).
    routes: list[str] = field(default_factory=list)


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _given(obj: object) -> Callable[[], object]:
    """A loader for a plugin handed over as an object (tests, ``extra_plugins``)."""
    return lambda: obj


def make_plugin_manager(
    plugin_sections: dict[str, dict] | None = None, extra_plugins: dict[str, object] | None = None
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """Load the enabled plugins of the ``loom`` entry-point group (plus ``extra_plugins``).

    ``LOOM_LOAD_PLUGINS=a,b`` loads only those; ``LOOM_DISABLE_PLUGINS=c`` skips those; a config
    section with ``enabled = false`` skips that one. ``LOOM_TRACE_PLUGINS=1`` traces hook calls.
    """
    sections = plugin_sections or {}
    only, disabled = _env_list("LOOM_LOAD_PLUGINS"), _env_list("LOOM_DISABLE_PLUGINS") or set()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}

    candidates: list[tuple[str, Callable[[], object], str, str | None]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        candidates.append((ep.name, ep.load, ep.value, dist.version if dist else None))
    for name, obj in (extra_plugins or {}).items():
        candidates.append((name, _given(obj), getattr(obj, "__name__", repr(obj)), None))

    for name, load, module, version in candidates:
        if only is not None and name not in only:
            continue
        if name in disabled or sections.get(name, {}).get("enabled", True) is False:
            continue
        if name in infos:
            raise PluginError(f"two plugins are named {name!r}: {infos[name].module} and {module}")
        plugin = load()
        pm.register(plugin, name=name)
        infos[name] = PluginInfo(name=name, module=module, version=version)
        infos[name].options = _decode_plugin_options(name, plugin, sections.get(name, {}))

    for name, _section in sections.items():
        known = {n for n, *_ in candidates}
        if name not in known:
            raise ConfigError(
                f"$.plugins.{name}: no installed plugin is named {name!r} "
                f"(installed: {', '.join(sorted(known)) or 'none'})"
            )
    check_hooks(pm)
    if os.environ.get("LOOM_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, file=sys.stderr, end=""))
        pm.enable_tracing()
    return pm, infos


def check_hooks(pm: pluggy.PluginManager) -> None:
    """Refuse a plugin that implements a hook Loom does not define (a misspelt name such as
    ``register_provider`` would otherwise never be called), naming the plugin and the hook."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        callers = {name: caller for name, caller in vars(pm.hook).items() if not name.startswith("_")}
        unknown = next(
            (
                n
                for n, c in callers.items()
                if not c.has_spec() and any(i.plugin is e.plugin for i in c.get_hookimpls())
            ),
            "?",
        )
        known = ", ".join(sorted(n for n, c in callers.items() if c.has_spec()))
        raise PluginError(
            f"plugin {pm.get_name(e.plugin)!r} implements {unknown!r}, which is not a Loom hook (hooks: {known})"
        ) from None


def _decode_plugin_options(name: str, plugin: object, section: dict) -> Any:
    options_type = getattr(plugin, "PluginOptions", None)
    values = {k: v for k, v in section.items() if k != "enabled"}
    if options_type is None:
        if values:
            keys = ", ".join(sorted(values))
            raise ConfigError(f"$.plugins.{name}: plugin {name!r} takes no options (got {keys})")
        return None
    try:
        return msgspec.convert(values, options_type, strict=True)
    except msgspec.ValidationError as e:
        raise ConfigError(f"$.plugins.{name}: {e}".replace(" - at `$", f" - at `$.plugins.{name}")) from None


def collect(
    pm: pluggy.PluginManager,
    hook_name: str,
    kwargs_for: Callable[[str], dict[str, Any]] | None = None,
) -> list[tuple[str, Any]]:
    """Call a ``register_*`` hook; return (plugin name, item) pairs in registration order.

    The hook is called through pluggy's hook relay one plugin at a time (a subset caller that
    leaves the others out), so ``LOOM_TRACE_PLUGINS`` traces every call and each registered item
    is known to come from the plugin whose implementation registered it. ``kwargs_for(plugin)``
    gives the hook's other arguments for that plugin.
    """
    items: list[tuple[str, Any]] = []
    impls = getattr(pm.hook, hook_name).get_hookimpls()  # registration order
    plugins = [impl.plugin for impl in impls]
    trace = bool(os.environ.get("LOOM_TRACE_PLUGINS"))
    for impl in impls:
        caller = pm.subset_hook_caller(hook_name, remove_plugins=[p for p in plugins if p is not impl.plugin])
        extra = kwargs_for(impl.plugin_name) if kwargs_for else {}
        caller(register=Registrar(impl.plugin_name, items, trace), **extra)
    return items


class Registrar:
    """The ``register`` a ``register_*`` hook is called with, for one plugin: it collects what the
    plugin registers. Its repr names the plugin, and under ``LOOM_TRACE_PLUGINS`` it says each item
    registered, so the trace shows whose call it is and what it added."""

    def __init__(self, plugin: str, items: list[tuple[str, Any]], trace: bool) -> None:
        self.plugin, self.items, self.trace = plugin, items, trace

    def __call__(self, item: Any) -> None:
        self.items.append((self.plugin, item))
        if self.trace:
            kind = item.__name__ if isinstance(item, type) else type(item).__name__
            name = getattr(item, "name", None) or getattr(item, "id", None)
            what = f"{kind} {name!r}" if isinstance(name, str) else repr(item)
            print(f"loom: plugin {self.plugin!r} registered {what}", file=sys.stderr)

    def __repr__(self) -> str:
        return f"<register for plugin {self.plugin!r}>"


def collect_providers(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> dict[str, tuple[str, type[Provider]]]:
    """Provider name -> (plugin name, provider class); a duplicate name stops start-up."""
    providers: dict[str, tuple[str, type[Provider]]] = {}
    for plugin, cls in collect(pm, "register_providers"):
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a provider without a name: {cls!r}")
        if name in providers:
            raise PluginError(f"provider {name!r} is registered by two plugins: {providers[name][0]!r} and {plugin!r}")
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise PluginError(f"provider {name!r} (plugin {plugin!r}) must subclass loom.sdk.Provider")
        for capability, method in missing_methods(cls):
            raise PluginError(
                f"provider {name!r} (plugin {plugin!r}) declares {capability.value} but has no {method}() method"
            )
        providers[name] = (plugin, cls)
        infos[plugin].providers.append(name)
    return providers
