"""The layers import only what they may, checked on the source (every import statement, the ones
inside functions too, relative ones resolved, and ``importlib.import_module("loom....")`` calls):

- ``loom.sdk`` is the contract: it imports nothing of Loom outside ``loom.sdk``;
- a built-in plugin imports only ``loom.sdk`` (its documented helpers ``loom.sdk.torchutil`` and
  ``loom.sdk.storykit`` included) and its own package, so what it does a third party's can do;
- the TUI imports only ``loom.sdk`` and itself: a client like any other;
- the daemon never imports ``loom.plugins`` (built-in plugins reach it as every plugin does,
  through the ``loom`` entry-point group, see pyproject.toml) nor ``loom.tui``, with one
  exception listed in DAEMON_EXCEPTIONS;
- a contrib package imports only ``loom.sdk`` of Loom;
- inside the daemon, the faces (the API's routes, ``daemon/api``, and the web UI, ``daemon/ui``)
  are leaves: nothing imports them but the app that mounts them (``daemon/app.py``), with the
  exceptions listed in FACE_EXCEPTIONS. Domain code two faces share lives outside both.

The last tests run the checker on files written for them, so each rule is seen to catch its
offender.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (file, module it may import) the daemon needs although the rule forbids it, with the reason.
DAEMON_EXCEPTIONS = {
    # `loom tui` is a subcommand of the one `loom` command: the CLI starts the client, which then
    # speaks to a daemon over HTTP like any other client. Nothing else of the daemon touches it.
    ("daemon/cli.py", "loom.tui"): "the `loom tui` command launches the TUI",
    ("daemon/cli.py", "loom.tui.web"): "the `loom tui --web` command serves the TUI in a browser",
}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _modules(folder: Path, package: str) -> Iterator[tuple[Path, str, bool]]:
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield path, ".".join([package, *parts]), path.name == "__init__.py"


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
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


@dataclass
class Layer:
    """The Loom modules a folder's code may import."""

    folder: str
    package: str
    #: Module name -> the package it may import besides the allowed ones (its own).
    own: Callable[[str], str]
    #: Loom packages it may import (besides its own); None: all but ``forbidden``.
    allowed: tuple[str, ...] | None = ("loom.sdk",)
    forbidden: tuple[str, ...] = ()
    exceptions: dict[tuple[str, str], str] = field(default_factory=dict)


def violations(layer: Layer, root: Path = ROOT) -> list[str]:
    bad = []
    for path, module, is_package in _modules(root / layer.folder, layer.package):
        rel = path.relative_to(root).as_posix()
        own = layer.own(module)
        for line, name in _imports(path, module, is_package):
            if not _within(name, "loom") or _within(name, own) or (rel, name) in layer.exceptions:
                continue  # the standard library and third-party packages are the layer's business
            if layer.allowed is not None and any(_within(name, p) for p in layer.allowed):
                continue
            if layer.allowed is None and not any(_within(name, p) for p in layer.forbidden):
                continue
            bad.append(f"{rel}:{line} imports {name}")
    return bad


def _plugin_package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 else module


SDK = Layer("sdk", "loom.sdk", own=lambda m: "loom.sdk", allowed=())
PLUGINS = Layer("plugins", "loom.plugins", own=_plugin_package)
TUI = Layer("tui", "loom.tui", own=lambda m: "loom.tui")
DAEMON = Layer(
    "daemon",
    "loom.daemon",
    own=lambda m: "loom.daemon",
    allowed=None,
    forbidden=("loom.plugins", "loom.tui"),
    exceptions=DAEMON_EXCEPTIONS,
)
CONTRIB = sorted(p.parent for p in ROOT.glob("contrib/*/loom_*/__init__.py"))

#: The daemon's faces: what answers HTTP requests. Services, stores and the other face import none.
FACES = ("loom.daemon.api", "loom.daemon.ui")
#: The one module that mounts the faces.
APP = "daemon/app.py"
#: (file, module of a face it may import) although the rule forbids it, with the reason.
FACE_EXCEPTIONS = {
    ("daemon/cli.py", "loom.daemon.api.openapi"): "`loom openapi` prints the document of the app it builds",
    # The web UI shows a job, a pipeline's parameters and an evaluation export exactly as the API
    # answers them: one view each, which the UI's pages render.
    ("daemon/ui/jobs.py", "loom.daemon.api.jobs"): "a job as the API shows it",
    ("daemon/ui/live.py", "loom.daemon.api.jobs"): "a job shown only to whom the API shows it",
    ("daemon/ui/pipelines.py", "loom.daemon.api.jobs"): "a pipeline's parameters checked as the API does",
    ("daemon/ui/evaluate.py", "loom.daemon.api.jobs"): "a job as the API shows it",
    ("daemon/ui/evaluate.py", "loom.daemon.api.evaluations"): "a preference recorded and exported as the API does",
    ("daemon/ui/models.py", "loom.daemon.api.admin_providers"): "the providers' overview of /admin/providers",
    # A batch's lines run through the non-streamed answers of the routes themselves (chat,
    # completions, embeddings, responses, images), which are still functions of daemon/api; the
    # services wire that runner into the batch pipeline. Moving those answers out is the next step.
    ("daemon/services.py", "loom.daemon.api.batch_lines"): "a batch line is answered as its route answers it",
}


def face_violations(root: Path = ROOT) -> list[str]:
    """Imports of a face (``daemon/api``, ``daemon/ui``) from outside it, but by the app."""
    bad = []
    for path, module, is_package in _modules(root / "daemon", "loom.daemon"):
        rel = path.relative_to(root).as_posix()
        if rel == APP:
            continue
        for line, name in _imports(path, module, is_package):
            face = next((f for f in FACES if _within(name, f)), None)
            if face is None or _within(module, face) or (rel, name) in FACE_EXCEPTIONS:
                continue
            bad.append(f"{rel}:{line} imports {name}")
    return bad


def contrib_layer(folder: Path, root: Path = ROOT) -> Layer:
    # A contrib package is a distribution of its own (``loom_haiku``), outside the ``loom`` namespace.
    return Layer(folder.relative_to(root).as_posix(), folder.name, own=lambda m: folder.name)


def test_the_sdk_imports_nothing_of_loom_but_itself():
    assert violations(SDK) == []


def test_plugins_import_only_the_sdk_and_themselves():
    assert violations(PLUGINS) == []


def test_the_tui_imports_only_the_sdk_and_itself():
    assert violations(TUI) == []


def test_the_daemon_imports_no_plugin_and_not_the_tui():
    assert violations(DAEMON) == []


def test_nothing_but_the_app_imports_the_api_or_the_web_ui():
    assert face_violations() == []


def test_each_face_exception_is_still_needed():
    used = {
        (path.relative_to(ROOT).as_posix(), name)
        for path, module, is_package in _modules(ROOT / "daemon", "loom.daemon")
        for _, name in _imports(path, module, is_package)
    }
    assert set(FACE_EXCEPTIONS) <= used


def test_each_daemon_exception_is_still_needed():
    """An exception that no import uses any more is taken off the list."""
    used = {
        (path.relative_to(ROOT).as_posix(), name)
        for path, module, is_package in _modules(ROOT / "daemon", "loom.daemon")
        for _, name in _imports(path, module, is_package)
    }
    assert set(DAEMON_EXCEPTIONS) <= used


@pytest.mark.parametrize("folder", CONTRIB, ids=lambda p: p.name)
def test_contrib_packages_import_only_the_sdk(folder):
    assert violations(contrib_layer(folder)) == []


def test_there_are_contrib_packages_to_check():
    assert CONTRIB, "no contrib/*/loom_* package found: the contrib check would check nothing"


# --- the checker, on files written for it ----------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_sees_a_plugin_reach_into_another_plugin_or_the_daemon(tmp_path):
    _write(
        tmp_path,
        {
            "plugins/__init__.py": "",
            "plugins/acme/__init__.py": (
                "from loom.sdk import hookimpl\nfrom . import helpers\nfrom ..story import writing\n"
            ),
            "plugins/acme/helpers.py": "def f():\n    from loom.daemon.config import Config\n",
            "plugins/acme/fine.py": "from loom.sdk.storykit import media\nfrom .helpers import f\nimport numpy\n",
        },
    )
    assert violations(PLUGINS, tmp_path) == [
        "plugins/acme/__init__.py:3 imports loom.plugins.story",
        "plugins/acme/helpers.py:2 imports loom.daemon.config",
    ]


def test_the_checker_sees_the_sdk_import_the_daemon(tmp_path):
    _write(
        tmp_path,
        {
            "sdk/__init__.py": "from .types import X\n",
            "sdk/types.py": "import msgspec\n",
            "sdk/testing/run.py": "from ...daemon.app import create_app\n",
            "sdk/client.py": "def f():\n    import loom.tui.app\n",
        },
    )
    assert violations(SDK, tmp_path) == [
        "sdk/client.py:2 imports loom.tui.app",
        "sdk/testing/run.py:1 imports loom.daemon.app",
    ]


def test_the_checker_sees_the_daemon_import_a_plugin_or_the_tui(tmp_path):
    _write(
        tmp_path,
        {
            "daemon/__init__.py": "",
            "daemon/app.py": (
                "from loom.sdk import calls\nfrom .models import ModelRegistry\nfrom ..plugins import mock\n"
            ),
            "daemon/models.py": "import importlib\nP = importlib.import_module('loom.plugins.llamacpp')\n",
            "daemon/api/chat.py": "from loom.tui.widgets import log\n",
            "daemon/cli.py": "def tui():\n    from loom.tui import run\n",
        },
    )
    assert violations(DAEMON, tmp_path) == [
        "daemon/api/chat.py:1 imports loom.tui.widgets",
        "daemon/app.py:3 imports loom.plugins",
        "daemon/models.py:2 imports loom.plugins.llamacpp",
    ]
    # The exception covers its one file only.
    _write(tmp_path, {"daemon/serving.py": "from loom.tui import run\n"})
    assert "daemon/serving.py:1 imports loom.tui" in violations(DAEMON, tmp_path)


def test_the_checker_sees_a_service_or_a_face_import_the_other_face(tmp_path):
    _write(
        tmp_path,
        {
            "daemon/__init__.py": "",
            "daemon/app.py": "from .api import chat\nfrom .ui import build_ui\n",
            "daemon/services.py": "from .api.chat_prepare import ChatIntake\nfrom .chat.intake import ChatIntake\n",
            "daemon/api/__init__.py": "",
            "daemon/api/chat.py": "from . import errors\nfrom ..ui.session import Sessions\n",
            "daemon/ui/__init__.py": "from .pages import page\n",
            "daemon/ui/pages.py": "def f():\n    from loom.daemon.api.errors import status_of\n",
            "daemon/responses/stream.py": "from ...daemon.ui import build_ui\n",
        },
    )
    assert face_violations(tmp_path) == [
        "daemon/api/chat.py:2 imports loom.daemon.ui.session",
        "daemon/responses/stream.py:1 imports loom.daemon.ui",
        "daemon/services.py:1 imports loom.daemon.api.chat_prepare",
        "daemon/ui/pages.py:2 imports loom.daemon.api.errors",
    ]


def test_the_checker_sees_the_tui_import_the_daemon(tmp_path):
    _write(tmp_path, {"tui/app.py": "from loom.sdk.client import AsyncLoomClient\nfrom loom.daemon import config\n"})
    assert violations(TUI, tmp_path) == ["tui/app.py:2 imports loom.daemon"]


def test_the_checker_sees_a_contrib_package_import_the_daemon(tmp_path):
    _write(
        tmp_path,
        {
            "contrib/loom-acme/loom_acme/__init__.py": "from loom.sdk import hookimpl\nfrom .provider import P\n",
            "contrib/loom-acme/loom_acme/provider.py": "from loom.plugins.mock import MockProvider\n",
        },
    )
    layer = contrib_layer(tmp_path / "contrib/loom-acme/loom_acme", tmp_path)
    assert violations(layer, tmp_path) == ["contrib/loom-acme/loom_acme/provider.py:1 imports loom.plugins.mock"]
