"""Helpers for the job and beam-search tests: a mock config, waiting on jobs, reading SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

FINAL = {"succeeded", "failed", "cancelled", "interrupted"}

# Mock models for the three beam-search roles, plus slow and broken variants.
BEAM_CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "bs-llm"
image = "bs-image"
vision = "bs-vision"

[[models]]
id = "bs-llm"
provider = "mock"
capabilities = ["chat"]

[[models]]
id = "bs-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "bs-vision"
provider = "mock"
capabilities = ["vision"]

[[models]]
id = "bs-slow-image"
provider = "mock"
capabilities = ["image"]
options = {{ latency_ms = {slow_ms} }}

[[models]]
id = "bs-broken-image"
provider = "mock"
capabilities = ["image"]
options = {{ fail_rate = 1.0, fail_message = "the mock GPU caught fire" }}

# Every 4th image fails: one candidate an iteration when an iteration makes four.
[[models]]
id = "bs-flaky-image"
provider = "mock"
capabilities = ["image"]
options = {{ fail_every = 4, fail_message = "the mock GPU hiccuped" }}

# Every 3rd score fails.
[[models]]
id = "bs-flaky-scorer"
provider = "mock"
capabilities = ["vision"]
options = {{ fail_every = 3, fail_message = "the mock scorer hiccuped" }}
"""


def beam_config(slow_ms: int = 250) -> str:
    return BEAM_CONFIG.format(slow_ms=slow_ms)


def small(**kw) -> dict:
    """Beam-search params that run fast on the mock (tiny images)."""
    return {"prompt": "a red apple on a wooden table", "width": 64, "height": 64, "seed": 7, **kw}


def start(client: httpx.Client, params: dict, pipeline: str = "beam_search") -> dict:
    r = client.post(f"/v1/pipelines/{pipeline}", json=params)
    assert r.status_code == 202, r.text
    return r.json()


def wait(client: httpx.Client, job_id: str, states=FINAL, timeout: float = 60, until=None) -> dict:
    """Poll the job until its state is in ``states`` (or ``until(job)`` is true)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if (until is not None and until(job)) or (until is None and job["state"] in states):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s: {job}")
        time.sleep(0.05)


def sse_events(response: httpx.Response) -> Iterator[dict]:
    """Parse an SSE stream into ``{"id", "event", "data"}`` dicts (comments skipped)."""
    event: dict = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event["id"] = int(value)
            elif field == "data":
                event["data"] = event.get("data", "") + value
            else:
                event[field] = value


def capability_of(step_key: str) -> str | None:
    """Which role served a beam-search step, from its key; None for the steps that only record
    an outcome (a round of work, a ranking)."""
    parts = step_key.split("/")
    if parts[1:2] in (["round"], ["rank"]):
        return None
    if parts[1:2] == ["judge"]:
        return "judge"
    kind = parts[-1]
    if kind == "image":
        return "image"
    if kind in ("score", "describe"):
        return "vision"
    return "llm"  # expand-*, combine, refine-*, critique/<parent>/<dim>
