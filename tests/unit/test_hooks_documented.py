"""Meta tests that keep the extension surface honest (datasette's are the model): every hookspec
is documented in docs/plugins.md with its signature and implemented by some test, and every
conformance check and kit setting is documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from loom.sdk import hookspecs
from loom.sdk.testing import CHECKS, ProviderConformance

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = {
    name: fn
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, f"{hookspecs.PROJECT}_spec")
}
TEST_FILES = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("contrib/*/tests/**/*.py")]


def test_there_are_hooks():
    assert set(HOOKS) >= {"register_providers", "register_models", "register_pipelines"}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_signature(name):
    signature = f"### {name}{inspect.signature(HOOKS[name])}"
    assert signature in DOCS, f"docs/plugins.md has no section headed {signature!r}"
    assert (HOOKS[name].__doc__ or "").strip(), f"hookspec {name} has no docstring"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_implemented_by_a_test(name):
    pattern = re.compile(rf"^\s*def {name}\(", re.M)
    implementing = [p for p in TEST_FILES if pattern.search(p.read_text(errors="replace"))]
    assert implementing, f"no test implements {name}(); add one that registers something through it"


@pytest.mark.parametrize("check", [c.id for c in CHECKS])
def test_conformance_check_is_documented(check):
    assert f"| `{check}` |" in DOCS, f"docs/plugins.md's checks table has no row for {check}"


SETTINGS = [
    n
    for n, v in vars(ProviderConformance).items()
    if not n.startswith("_") and not callable(v) and not isinstance(v, (classmethod, staticmethod))
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_conformance_setting_is_documented(setting):
    assert f"| `{setting}` |" in DOCS, f"docs/plugins.md's settings table has no row for {setting}"
