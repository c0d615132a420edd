"""``loom plugins`` (what is installed and what it registers) and ``loom new-plugin`` (a skeleton).

``loom plugins`` loads plugins the way the daemon does (entry points, ``LOOM_LOAD_PLUGINS`` /
``LOOM_DISABLE_PLUGINS``, and with ``--config`` the ``[plugins.NAME]`` sections), so what it lists
is what ``loom serve`` would load. ``loom new-plugin`` writes a provider package from the templates
in ``templates/new_plugin/``; the package passes the conformance kit as generated.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import re
import string
import sys
from pathlib import Path
from typing import Any

from loom.sdk.errors import ConfigError, PluginError
from loom.sdk.routes import route_claims

from .plugin_manager import ENTRY_POINT_GROUP, collect, collect_providers, make_plugin_manager

BUILTIN_PREFIX = "loom.plugins."


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def inventory(
    plugin_sections: dict[str, dict] | None = None, extra_plugins: dict[str, object] | None = None
) -> list[dict[str, Any]]:
    """One record per loaded plugin, by name: version, hooks, providers (with capabilities), models,
    pipelines and the paths of its routes.

    Raises PluginError / ConfigError as start-up would (a duplicate name, a bad options section).
    """
    pm, infos = make_plugin_manager(plugin_sections, extra_plugins)
    providers = collect_providers(pm, infos)
    models = collect(pm, "register_models")
    pipelines = collect(pm, "register_pipelines")
    # Routes are registered without a daemon here (no RouteContext): only their paths are read.
    routes = collect(pm, "register_routes", lambda plugin: {"loom": None, "options": infos[plugin].options})
    distributions = {
        ep.name: ep.dist.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist
    }
    records = []
    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        provider_records: list[dict[str, Any]] = []
        for provider_name in info.providers:
            cls = providers[provider_name][1]
            provider_records.append(
                {
                    "name": provider_name,
                    "class": _qualname(cls),
                    "capabilities": sorted(c.value for c in cls.capabilities),
                    "local": cls.local,
                    "deterministic": cls.deterministic,
                }
            )
        records.append(
            {
                "name": name,
                "version": info.version,
                "module": info.module,
                "distribution": distributions.get(name),
                "builtin": info.module.startswith(BUILTIN_PREFIX),
                "hooks": hooks,
                "capabilities": sorted({c for p in provider_records for c in p["capabilities"]}),
                "providers": provider_records,
                "models": [
                    {"id": m.id, "provider": m.provider, "capabilities": sorted(c.value for c in m.capabilities)}
                    for plugin_name, m in models
                    if plugin_name == name
                ],
                "pipelines": [
                    {
                        "name": getattr(p, "name", "?"),
                        "class": _qualname(p),
                        "description": getattr(p, "description", ""),
                    }
                    for plugin_name, p in pipelines
                    if plugin_name == name
                ],
                "routes": route_claims([item for plugin_name, item in routes if plugin_name == name])[0],
            }
        )
    return sorted(records, key=lambda r: r["name"])


def format_inventory(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no plugins loaded (check LOOM_LOAD_PLUGINS / LOOM_DISABLE_PLUGINS)"
    lines = []
    for r in records:
        origin = r["distribution"] or r["module"]
        lines.append(f"{r['name']} {r['version'] or '(no version)'}  ({origin}{', built in' if r['builtin'] else ''})")
        for p in r["providers"]:
            flags = ["local" if p["local"] else "remote"] + (["deterministic"] if p["deterministic"] else [])
            lines.append(f"  provider  {p['name']}: {', '.join(p['capabilities'])}  ({', '.join(flags)})")
        for m in r["models"]:
            lines.append(f"  model     {m['id']} (provider {m['provider']})")
        for p in r["pipelines"]:
            lines.append(f"  pipeline  {p['name']}" + (f": {p['description']}" if p["description"] else ""))
        if r["routes"]:
            lines.append(f"  routes    {', '.join(r['routes'])}")
        if not (r["providers"] or r["models"] or r["pipelines"] or r["routes"]):
            lines.append(f"  registers nothing (hooks: {', '.join(r['hooks']) or 'none'})")
    return "\n".join(lines)


def plugins_command(args: argparse.Namespace) -> int:
    sections = None
    try:
        if args.config:
            from .config import load_config

            sections = load_config(args.config).plugins
        records = inventory(sections)
    except (ConfigError, PluginError) as e:
        print(f"loom: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a plugin that fails to import: say which, without a traceback
        print(f"loom: could not load the installed plugins: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"plugins": records}, indent=2))
    else:
        print(format_inventory(records))
    return 0


# --- new-plugin -------------------------------------------------------------------------------

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
#: Template file -> path in the new package (formatted with the names below).
TEMPLATES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{module}/__init__.py",
    "provider.py.tmpl": "{module}/provider.py",
    "test_conformance.py.tmpl": "tests/test_{module}_conformance.py",
}


def plugin_names(name: str) -> dict[str, str]:
    """``acme-llm`` -> plugin/provider ``acme-llm``, distribution ``loom-acme-llm``, module
    ``loom_acme_llm``, class ``AcmeLlmProvider``. A leading ``loom-`` is dropped."""
    name = name.removeprefix("loom-").removeprefix("loom_")
    if not NAME.match(name):
        raise ValueError(
            f"plugin name {name!r} must be lowercase letters and digits, words joined by - or _ "
            "(e.g. 'acme' or 'acme-llm')"
        )
    words = re.split(r"[-_]", name)
    return {
        "name": name,
        "dist": f"loom-{name}",
        "module": "loom_" + "_".join(words),
        "cls": "".join(w.capitalize() for w in words) + "Provider",
    }


def write_plugin(name: str, directory: str | Path) -> Path:
    """Write the skeleton for ``name`` under ``directory``; returns the package folder."""
    names = plugin_names(name)
    root = Path(directory) / names["dist"]
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} already exists and is not empty")
    templates = importlib.resources.files("loom.daemon") / "templates" / "new_plugin"
    for template, target in TEMPLATES.items():
        text = string.Template(templates.joinpath(template).read_text()).substitute(names)
        path = root / target.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def new_plugin_command(args: argparse.Namespace) -> int:
    try:
        root = write_plugin(args.name, args.dir)
    except (ValueError, FileExistsError) as e:
        print(f"loom: {e}", file=sys.stderr)
        return 2
    names = plugin_names(args.name)
    print(f"wrote {root}/ (plugin {names['name']!r}, provider class {names['module']}.{names['cls']})")
    print("next:")
    print(f"  pip install -e {root}    (Loom finds it through its `loom` entry point)")
    print(f"  pytest {root}/tests    (the conformance kit)")
    print("  loom plugins    (lists it)")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``plugins`` and ``new-plugin`` to the ``loom`` command."""
    plugins = sub.add_parser("plugins", help="list installed plugins and what they register")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--config", help="apply this config's [plugins.NAME] sections (enabled, options)")
    plugins.set_defaults(func=plugins_command)

    new = sub.add_parser("new-plugin", help="write a provider plugin package skeleton")
    new.add_argument("name", help="the plugin and provider name, e.g. 'acme'")
    new.add_argument("--dir", default=".", help="where to create loom-NAME/ (default: here)")
    new.set_defaults(func=new_plugin_command)
