"""A plugin imports only ``loom.sdk`` (its documented helpers ``loom.sdk.torchutil`` and
``loom.sdk.storykit`` included) and its own package; the TUI only ``loom.sdk`` and itself.

So what a built-in plugin does, a third party's can do too, and the TUI stays a client like any
other. Checked on the source, every import statement (function-level ones too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules(folder: Path, package: str):
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        is_package = path.name == "__init__.py"
        yield path, ".".join([package, *parts]), is_package


def _imports(path: Path, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
                continue
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            # ``from . import x`` names submodules: check each as the module it is.
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found += [(node.lineno, n) for n in names]
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _violations(folder: str, package: str, own_package_of) -> list[str]:
    bad = []
    for path, module, is_package in _modules(ROOT / folder, package):
        own = own_package_of(module)
        for line, name in _imports(path, module, is_package):
            if not _within(name, "loom"):
                continue  # third-party and the standard library are the plugin's business
            if _within(name, "loom.sdk") or _within(name, own):
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


def _plugin_package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 else module


def test_plugins_import_only_the_sdk_and_themselves():
    assert _violations("plugins", "loom.plugins", _plugin_package) == []


def test_the_tui_imports_only_the_sdk_and_itself():
    assert _violations("tui", "loom.tui", lambda module: "loom.tui") == []


@pytest.mark.parametrize("package", sorted(p.parent.name for p in ROOT.glob("contrib/*/loom_*/__init__.py")))
def test_contrib_plugins_import_only_the_sdk(package):
    folder = next(ROOT.glob(f"contrib/*/{package}"))
    bad = []
    for path, module, is_package in _modules(folder, package):
        for line, name in _imports(path, module, is_package):
            if _within(name, "loom") and not _within(name, "loom.sdk"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


def test_the_check_sees_a_reach_into_another_plugin(tmp_path):
    source = tmp_path / "plugins" / "acme"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text(
        "from loom.sdk import hookimpl\nfrom . import helpers\nfrom ..story import writing\n"
    )
    (source / "helpers.py").write_text("def f():\n    from loom.daemon.config import Config\n")
    found = {
        name
        for path, module, is_package in _modules(source, "loom.plugins.acme")
        for _, name in _imports(path, module, is_package)
        if not (_within(name, "loom.sdk") or _within(name, "loom.plugins.acme"))
    }
    assert found == {"loom.plugins.story", "loom.daemon.config"}
