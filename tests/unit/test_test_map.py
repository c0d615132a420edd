"""tests/README.md maps each part of daemon/, plugins/ and sdk/ to its test files: every part is
in the map, and every test file the map names exists (so it cannot rot as parts come and go)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "tests" / "README.md"


def rows() -> list[tuple[list[str], str]]:
    """(part patterns, tests cell) of each table row; a bare name in a part cell is in the folder
    of the path before it (`daemon/api/chat*.py`, `policy.py`)."""
    out = []
    for line in MAP.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        patterns: list[str] = []
        for name in re.findall(r"`([^`]+)`", cells[0]):
            if "/" not in name.rstrip("/") and patterns:
                name = patterns[-1].rsplit("/", 1)[0] + "/" + name
            patterns.append(name)
        out.append((patterns, cells[1]))
    return out


def parts(folder: str) -> list[str]:
    """A folder's modules (``daemon/app.py``) and packages (``daemon/jobs/``), as the map writes them."""
    found = []
    for p in sorted((ROOT / folder).iterdir()):
        if p.name.startswith(("_", ".")) or p.name == "py.typed":
            continue
        if p.suffix == ".py":
            found.append(f"{folder}/{p.name}")
        elif p.is_dir() and p.name != "__pycache__":
            found.append(f"{folder}/{p.name}/")
    return found


def test_every_part_of_daemon_plugins_and_sdk_is_in_the_map():
    patterns = [p for ps, _ in rows() for p in ps]
    missing = [
        part
        for folder in ("daemon", "plugins", "sdk")
        for part in parts(folder)
        if not any(fnmatch.fnmatch(part, p) or fnmatch.fnmatch(part.rstrip("/"), p.rstrip("/")) for p in patterns)
    ]
    assert not missing, f"tests/README.md does not say where these are tested: {missing}"


def test_every_test_file_the_map_names_exists():
    named = [
        re.sub(r"\s*\(.*?\)", "", entry).strip() for _, cell in rows() for entry in re.split(r",\s*(?![^()]*\))", cell)
    ]
    absent = [
        n
        for n in named
        if n and not n.startswith("`") and not list((ROOT / "tests").glob(n)) and not list(ROOT.glob(n.strip("`")))
    ]
    assert not absent, f"tests/README.md names test files that do not exist: {absent}"
