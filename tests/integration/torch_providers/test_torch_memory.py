"""Loading reports the memory a model holds; unloading gives it back (RSS on the CPU).

Measured in a fresh process so the test runner's own allocations do not blur the numbers; the
model (~77 MB of float32 weights) goes through the provider exactly as the daemon drives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

SCRIPT = r"""
import json, sys
import msgspec

from loom.sdk import ModelSpec, RunContext
from loom.sdk.types import CompletionRequest
from loom.plugins.transformers import TransformersTextProvider
from loom.sdk.torchutil.memory import rss_bytes

options = msgspec.convert({"model": sys.argv[1]}, TransformersTextProvider.Options)
provider = TransformersTextProvider(ModelSpec(id="big", provider="transformers", options=options))
out = {"estimate": provider.estimate_bytes()}
request = CompletionRequest(model="big", prompt="Hello", max_tokens=3, seed=1)

def cycle(tag):
    before = rss_bytes()
    provider.load("cpu")
    out[tag + "_reported"] = provider.memory_bytes()
    list(provider.complete("Hello", request, RunContext()))  # touch every weight
    loaded = rss_bytes()
    provider.unload()
    out[tag] = {"before": before, "loaded": loaded, "after": rss_bytes()}

cycle("first")   # also imports torch and transformers: only the reported figure is checked
cycle("second")
print(json.dumps(out))
"""


def test_load_reports_and_unload_frees_memory(big_gpt2, tmp_path):
    env_offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "2"}
    import os

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(big_gpt2)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env_offline},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    weights = m["estimate"]
    assert 70e6 < weights < 90e6  # the safetensors file: ~19M float32 parameters
    mib = {k: {kk: vv >> 20 for kk, vv in v.items()} if isinstance(v, dict) else v >> 20 for k, v in m.items()}
    # Reported: the model, not the libraries its first load imported.
    for tag in ("first_reported", "second_reported"):
        assert 0.9 * weights <= m[tag] <= 1.5 * weights, mib
    second = m["second"]
    assert second["loaded"] - second["before"] >= 0.8 * weights, mib  # loading took the memory
    assert second["loaded"] - second["after"] >= 0.8 * weights, mib  # unloading gave it back
    assert second["after"] - second["before"] <= 0.2 * weights, mib


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_daemon_unload_gives_the_memory_back(big_gpt2, tmp_path, offline_env):
    """Over HTTP: the model loads into a worker process that holds its weights, and unloading
    ends that process; the daemon's own RSS does not move."""
    import httpx

    from tests.conftest import Daemon, write_config

    config = write_config(
        tmp_path / "loom.toml",
        f"""
        [daemon]
        host = "127.0.0.1"

        [[models]]
        id = "big"
        provider = "transformers"
        options = {{ model = "{big_gpt2}" }}
    """,
    )
    daemon = Daemon(config, tmp_path / "data", env=offline_env(tmp_path)).start()
    try:
        http = httpx.Client(base_url=daemon.url, timeout=180)
        weights = sum(p.stat().st_size for p in big_gpt2.glob("*.safetensors"))
        before = rss_of(daemon.proc.pid)
        state = http.post("/admin/models/big/load").json()
        assert state["loaded"] is True and state["executor"] == "subprocess"
        worker = state["pid"]
        # Weights may be memory-mapped from the safetensors file: one request pages them all in.
        done = http.post("/v1/completions", json={"model": "big", "prompt": "Hi", "max_tokens": 1})
        assert done.status_code == 200, done.text
        held = rss_of(worker)
        (cpu,) = [d for d in http.get("/admin/scheduler").json()["devices"] if d["name"] == "cpu"]
        assert cpu["resident"][0]["footprint"] >= 0.8 * weights  # the ledger charges the worker
        assert http.post("/admin/models/big/unload").json()["loaded"] is False
        after = rss_of(daemon.proc.pid)
        mib = {"weights": weights >> 20, "before": before >> 20, "worker": held >> 20, "after": after >> 20}
        assert held >= weights, mib  # the worker held the weights (and torch)
        assert not os.path.exists(f"/proc/{worker}/status") or _zombie(worker), mib  # the process ended
        assert abs(after - before) <= 0.05 * before, mib  # the daemon never held them
    finally:
        daemon.stop()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True
