"""Starting the daemon (and the TUI) imports no heavy runtime (harlequin's test is the model)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "diffusers", "transformers", "open_clip", "llama_cpp", "faiss", "torchvision"]

SCRIPT = """
import sys
from loom.daemon.app import create_app
from loom.daemon.config import DEFAULT_CONFIG, load_config
create_app(load_config(DEFAULT_CONFIG, data_dir=sys.argv[1]))  # the app opens its stores there
import loom.sdk, loom.sdk.client
heavy = {heavy!r}
print(",".join(m for m in heavy if m in sys.modules))
"""


def test_serve_imports_nothing_heavy(tmp_path):
    script = SCRIPT.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at start-up: {out.stdout}"
