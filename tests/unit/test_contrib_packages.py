"""The contrib/ plugins: separate packages, found through their entry points with no change to Loom."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
from loom.daemon.cli_plugins import TEMPLATES, inventory

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in ROOT.glob("contrib/*/pyproject.toml"))


def test_there_are_a_provider_and_a_pipeline_plugin():
    assert {p.name for p in PACKAGES} >= {"loom-ollama", "loom-haiku"}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_is_complete_and_discovered(package):
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]["loom"]
    assert (package / "README.md").is_file() and list((package / "tests").glob("test_*.py"))
    listed = {r["name"]: r for r in inventory()}
    for name in entry_points:
        assert name in listed, f"{project['name']} is not installed: pip install -e {package.relative_to(ROOT)}"
        assert listed[name]["distribution"] == project["name"] and not listed[name]["builtin"]
        assert listed[name]["providers"] or listed[name]["pipelines"] or listed[name]["routes"]


def test_test_file_names_are_unique_across_the_suite():
    """The suite imports test modules by basename (no __init__.py): a clash breaks collection."""
    names = [p.name for p in [*ROOT.glob("tests/**/test_*.py"), *ROOT.glob("contrib/*/tests/test_*.py")]]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_new_plugin_templates_ship_as_package_data():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "loom.sdk.testing" in setuptools["packages"]
    # A folder of data files is a package of its own to setuptools (listed, or it warns at build).
    assert "loom.daemon.templates.new_plugin" in setuptools["packages"]
    patterns = setuptools["package-data"]["loom.daemon.templates.new_plugin"]
    for template in TEMPLATES:
        assert (ROOT / "daemon" / "templates" / "new_plugin" / template).is_file()
        assert any(fnmatch.fnmatch(template, p) for p in patterns), f"{template} is not in the templates' package-data"
