"""pyproject.toml's hand-written package list covers every package, and the default config ships."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def discovered() -> set[str]:
    """Every folder with an ``__init__.py`` under the mapped source folders, as a package name."""
    found = set()
    for package, folder in SETUPTOOLS["package-dir"].items():
        root = ROOT / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "templates" in rel or "__pycache__" in rel:
                continue
            found.add(".".join((package, *rel)))
    return found


def test_every_package_is_listed():
    listed = set(SETUPTOOLS["packages"])
    data_only = set(SETUPTOOLS["package-data"]) - discovered()  # folders of data files, listed to ship them
    assert listed == discovered() | data_only
    assert data_only == {"loom.daemon.templates.new_plugin", "loom.daemon.ui.templates", "loom.daemon.ui.static"}


def test_the_default_config_ships_as_package_data():
    link = ROOT / "daemon" / "plugins.toml"
    assert link.is_symlink() and link.readlink().as_posix() == "../plugins.toml"
    assert "plugins.toml" in SETUPTOOLS["package-data"]["loom.daemon"]
    assert link.read_text() == (ROOT / "plugins.toml").read_text()


def test_license_metadata_is_an_spdx_expression():
    # A TOML table here is deprecated by setuptools (and warned about at every build).
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
