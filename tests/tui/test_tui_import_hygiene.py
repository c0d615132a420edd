"""The TUI is a client like any other: it imports neither the daemon nor the plugins, and nothing
heavy (torch and friends) either, whether imported as a library or started as `loom tui`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TUI = Path(__file__).resolve().parents[2] / "tui"
HEAVY = ["torch", "torchvision", "diffusers", "transformers", "open_clip", "llama_cpp", "faiss", "ray"]

SCRIPT = """
import sys
import loom.tui.app, loom.tui.commands, loom.tui.screens, loom.tui.widgets
app = loom.tui.app.LoomApp(url="http://127.0.0.1:9")
bad = [m for m in sys.modules if m.startswith(("loom.daemon", "loom.plugins")) or m.split(".")[0] in {heavy!r}]
print(",".join(sorted(bad)))
"""

CLI = """
import sys
from loom.daemon.cli import main  # what `loom tui` runs, up to starting the app
import loom.tui.app
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def run(script: str) -> str:
    out = subprocess.run([sys.executable, "-c", script.format(heavy=HEAVY)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_tui_imports_neither_daemon_nor_plugins_nor_torch():
    assert run(SCRIPT) == ""


def test_loom_tui_starts_without_heavy_imports():
    assert run(CLI) == ""


def test_no_module_in_tui_names_the_daemon_or_the_plugins():
    for path in TUI.rglob("*.py"):
        depth = len(path.relative_to(TUI).parts)  # tui/app.py: 1, tui/screens/jobs.py: 2
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                assert node.level <= depth, f"{path}: a relative import that leaves loom.tui"
            for name in names:
                assert not name.startswith(("loom.daemon", "loom.plugins")), f"{path} imports {name}"
