"""docs/architecture.md cites files and the functions in them (`routing.py:ModelRouter.chain`);
each citation must still name a file of the tree and, after the colon, a function or class
defined in it. A path is written from wherever it is clear (`api/chat.py`, `scheduler/core.py`,
`daemon/cli.py`), so it matches any file whose path ends with it."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
#: `some/path.py` or `some/path.py:Name.attr(args)`, inside backticks.
CITATION = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.py)(?::([\w.]+)(?:\([^`]*\))?)?`")
#: Folders that hold Loom's code and tests (not the virtual environment or build output).
TREES = ("daemon", "sdk", "plugins", "tui", "contrib", "tests", "bench")


@cache
def _files() -> tuple[str, ...]:
    return tuple(p.relative_to(ROOT).as_posix() for tree in TREES for p in (ROOT / tree).rglob("*.py"))


def citations(text: str) -> list[tuple[str, str | None]]:
    return sorted(
        {(m.group(1), m.group(2)) for m in CITATION.finditer(text) if "NAME" not in m.group(1)},
        key=lambda c: (c[0], c[1] or ""),
    )


def files_for(path: str) -> list[str]:
    return [f for f in _files() if f == path or f.endswith("/" + path)]


def defines(source: str, qualname: str) -> bool:
    """Whether ``qualname`` (``Name`` or ``Class.method``) is defined at the top of ``source``."""
    scope: list[ast.stmt] = ast.parse(source).body
    for part in qualname.split("."):
        found = next(
            (
                node
                for node in scope
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part
            ),
            None,
        )
        if found is None:
            return False
        scope = found.body
    return True


CITED = citations(DOC.read_text())


def test_the_document_cites_code():
    assert len(CITED) > 40, "the citation pattern found (almost) nothing: has the document's style changed?"


@pytest.mark.parametrize("path, name", CITED, ids=[f"{p}:{n}" if n else p for p, n in CITED])
def test_each_cited_file_and_function_exists(path, name):
    found = files_for(path)
    assert found, f"docs/architecture.md cites {path}, which no file of the tree is"
    if name is not None:
        assert any(defines((ROOT / f).read_text(), name) for f in found), (
            f"docs/architecture.md cites {path}:{name}, which none of {found} defines"
        )


def test_the_check_sees_a_stale_citation():
    cited = citations("see `routing.py:ModelRouter.nowhere` and `api/gone.py` and `routing.py:ModelRouter.chain`")
    assert cited == [("api/gone.py", None), ("routing.py", "ModelRouter.chain"), ("routing.py", "ModelRouter.nowhere")]
    assert files_for("api/gone.py") == []
    source = (ROOT / "daemon/routing.py").read_text()
    assert defines(source, "ModelRouter.chain") and not defines(source, "ModelRouter.nowhere")
