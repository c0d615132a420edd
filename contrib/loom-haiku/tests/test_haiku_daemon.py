"""The haiku pipeline as a job through `loom serve`: POST /v1/pipelines/haiku, poll, read files.

The mock plugin answers for the models: a chat model whose fixed reply is a haiku, and an image
model that draws a PNG.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from loom.sdk.testing import LoomServer, png_size

HAIKU = "An old silent pond\\nA frog jumps into the pond\\nSplash! Silence again"
CONFIG = f"""
[routes]
chat = "poet"
image = "painter"

[[models]]
id = "poet"
provider = "mock"
capabilities = ["chat"]
options = {{ reply = "{HAIKU}" }}

[[models]]
id = "painter"
provider = "mock"
capabilities = ["image"]
"""


@pytest.fixture(scope="module")
def loom(tmp_path_factory):
    with LoomServer(CONFIG, tmp_path_factory.mktemp("loom-haiku")) as server:
        yield server


def wait_for(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_loom_plugins_lists_the_pipeline():
    out = subprocess.run(
        [sys.executable, "-m", "loom.daemon.cli", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    plugin = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}["haiku"]
    assert plugin["distribution"] == "loom-haiku" and plugin["hooks"] == ["register_pipelines"]
    assert [p["name"] for p in plugin["pipelines"]] == ["haiku"]


def test_pipeline_is_published_with_its_schema(loom):
    with httpx.Client(base_url=loom.url) as client:
        pipelines = {p["name"]: p for p in client.get("/v1/pipelines").json()["data"]}
    assert pipelines["haiku"]["plugin"] == "haiku"
    assert "topic" in json.dumps(pipelines["haiku"]["params_schema"])


def test_job_writes_and_illustrates_a_haiku(loom):
    with httpx.Client(base_url=loom.url, timeout=30) as client:
        started = client.post("/v1/pipelines/haiku", json={"topic": "a pond", "seed": 5, "width": 64, "height": 48})
        assert started.status_code == 202, started.text
        job = wait_for(client, started.json()["id"])
        assert job["state"] == "succeeded", job
        result = job["result"]
        assert result["haiku"] == HAIKU.split("\\n") and result["chat_model"] == "poet"
        assert client.get(f"/v1/files/{result['text_path']}").text.splitlines() == result["haiku"]
        assert png_size(client.get(f"/v1/files/{result['image']}").content) == (64, 48)


def test_unknown_parameter_is_a_400_naming_it(loom):
    with httpx.Client(base_url=loom.url) as client:
        response = client.post("/v1/pipelines/haiku", json={"topic": "x", "colour": "red"})
    assert response.status_code == 400 and "colour" in response.text
