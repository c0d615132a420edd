"""Starting the daemon (and the TUI) imports no heavy runtime (harlequin's test is the model)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "diffusers", "transformers", "open_clip", "llama_cpp", "faiss", "torchvision", "ray"]

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


RAY = """
import sys
from loom.daemon.app import create_app
from loom.daemon.config import decode_config
config = decode_config({{"daemon": {{"data_dir": sys.argv[1]}}, "scheduler": {{"executor": "ray"}}}})
create_app(config)  # Ray is imported when the daemon starts and joins the cluster, not before
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""

NO_RAY = """
import sys
sys.modules["ray"] = None  # as if it were not installed
from loom.daemon.workers.ray_cluster import import_ray
from loom.sdk.errors import ConfigError
try:
    import_ray()
except ConfigError as e:
    print(e)
"""


def test_ray_is_imported_only_by_a_daemon_that_joins_a_cluster(tmp_path):
    script = RAY.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported before joining the cluster: {out.stdout}"
    missing = subprocess.run([sys.executable, "-c", NO_RAY], capture_output=True, text=True, check=True)
    assert "pip install 'loom-daemon[ray]'" in missing.stdout
