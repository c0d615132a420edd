"""OpenAI's Batch API on a live daemon, through the ``openai`` package, on the mock models: create,
poll, download the output, cancel, a daemon killed or stopped mid-batch (no finished line runs
again), lines grouped by model, bad lines failing alone, files that cannot be run failing the batch
with OpenAI's ``errors``; every object checked against OpenAI's published schemas. SmolLM2 and a
tiny torch embedder are in ``test_batches_models.py``."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import MOCK_CONFIG, Daemon, openai_client, write_config
from tests.integration.batch_support import (
    chat_line,
    check_batch,
    check_output,
    create,
    embedding_line,
    finished_calls,
    jsonl,
    lines_of,
    wait,
    warm_validators,
)
from tests.openai_schema import require_document

EXTRA = """
[[models]]
id = "mock-slow"
provider = "mock"
capabilities = ["chat"]
options = { latency_ms = 250 }

[[models]]
id = "mock-embed"
provider = "mock"
capabilities = ["embedding"]
options = { dimensions = 16 }

[batches]
max_lines = 40
concurrency = 2
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    require_document()
    tmp = tmp_path_factory.mktemp("batches")
    d = Daemon(write_config(tmp / "loom.toml", MOCK_CONFIG + EXTRA), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    with openai_client(daemon, timeout=30) as c:
        yield c


def test_chat_batch_end_to_end_with_bad_lines_failing_alone(client):
    lines = [chat_line(f"ok-{i}", "mock-chat", f"Question {i}", max_tokens=8) for i in range(5)]
    lines.insert(2, chat_line("no-such-model", "nope"))
    lines.append(chat_line("bad-param", "mock-chat", bogus=1))
    batch = create(client, "/v1/chat/completions", lines, metadata={"run": "eval-7"})
    check_batch(batch)
    assert batch.status == "validating" and batch.object == "batch" and batch.metadata == {"run": "eval-7"}
    assert batch.expires_at == batch.created_at + 86400

    done = wait(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.model_dump() == {"total": 7, "completed": 5, "failed": 2}
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.usage is not None and done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    out, errors = check_output(client, done, "/v1/chat/completions")
    assert [x["custom_id"] for x in out] == [f"ok-{i}" for i in range(5)]  # in the file's order
    by_id = {x["custom_id"]: x for x in errors}
    assert by_id["no-such-model"]["response"]["status_code"] == 404
    assert by_id["no-such-model"]["error"]["code"] == "model_not_found"
    assert by_id["bad-param"]["response"]["status_code"] == 400
    assert by_id["bad-param"]["response"]["body"]["error"]["param"] == "bogus"
    assert done.id in [b.id for b in client.batches.list()]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/embeddings", {"model": "mock-embed", "input": ["one", "two"]}),
        ("/v1/completions", {"model": "mock-chat", "prompt": "Once", "max_tokens": 5}),
        ("/v1/responses", {"model": "mock-chat", "input": "Hello", "max_output_tokens": 16}),
        ("/v1/images/generations", {"model": "mock-image", "prompt": "a cat", "size": "64x64"}),
    ],
)
def test_every_endpoint(client, endpoint, body):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": endpoint, "body": body} for i in range(3)]
    done = wait(client, create(client, endpoint, lines).id)
    assert done.status == "completed" and done.request_counts.completed == 3, done
    out, errors = check_output(client, done, endpoint)
    assert len(out) == 3 and errors == [] and done.error_file_id is None
    assert done.model == body["model"]


def test_a_file_that_cannot_run_fails_the_batch_naming_each_line(client):
    good = chat_line("a", "mock-chat")
    data = b"".join(
        [
            jsonl([good]),
            b"{not json\n",
            jsonl([{**chat_line("b", "mock-chat"), "url": "/v1/embeddings"}]),
            jsonl([chat_line("a", "mock-chat")]),
            jsonl([{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions"}]),
            jsonl([{**chat_line("d", "mock-chat"), "method": "GET"}]),
        ]
    )
    done = wait(client, create(client, "/v1/chat/completions", data).id)
    assert done.status == "failed" and done.failed_at
    errors = done.errors.model_dump()
    assert errors["object"] == "list"
    got = [(e["line"], e["code"], e["param"]) for e in errors["data"]]
    assert got == [
        (2, "invalid_json_line", None),
        (3, "mismatched_endpoint", "url"),
        (4, "duplicate_custom_id", "custom_id"),
        (5, "missing_required_parameter", "body"),
        (6, "invalid_request", "method"),
    ]
    assert done.request_counts.total == 0 and done.output_file_id is None  # nothing ran: never half a batch


def test_too_many_lines_and_an_empty_file_fail_the_batch(client):
    lines = [chat_line(f"x{i}", "mock-chat") for i in range(41)]  # [batches] max_lines = 40
    done = wait(client, create(client, "/v1/chat/completions", lines).id)
    assert done.status == "failed" and done.errors.data[0].code == "too_many_requests"
    assert "max_lines" in done.errors.data[0].message and done.errors.data[0].line == 41
    done = wait(client, create(client, "/v1/chat/completions", b"\n\n").id)
    assert done.status == "failed" and done.errors.data[0].code == "empty_file"


def test_bad_create_requests_name_the_field(client):
    f = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.body["param"] == "input_file_id"
    with pytest.raises(openai.NotFoundError) as e:
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.body["param"] == "input_file_id"
    batch_file = client.files.create(file=("b.jsonl", jsonl([chat_line("a", "mock-chat")])), purpose="batch")
    for field, value in (("endpoint", "/v1/moderations"), ("completion_window", "48h")):
        kw = {"input_file_id": batch_file.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        with pytest.raises(openai.BadRequestError) as e:
            client.batches.create(**{**kw, field: value})
        assert e.value.body["param"] == field
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(**kw, extra_body={"priority": 5})
    assert e.value.body["param"] == "priority"
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_cancel_stops_the_lines_and_keeps_what_finished(client):
    lines = [chat_line(f"s{i}", "mock-slow", max_tokens=4) for i in range(30)]
    batch = create(client, "/v1/chat/completions", lines)
    wait(client, batch.id, until=lambda b: b.request_counts.completed >= 2)
    cancelled = client.batches.cancel(batch.id)
    check_batch(cancelled)
    assert cancelled.status in ("cancelling", "cancelled") and cancelled.cancelling_at
    done = wait(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    assert 2 <= done.request_counts.completed < 30
    out, _ = check_output(client, done, "/v1/chat/completions")
    assert len(out) == done.request_counts.completed
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_a_batch_is_a_lowest_priority_job_of_a_hidden_pipeline(daemon, client):
    batch = create(client, "/v1/embeddings", [embedding_line("e", "mock-embed", "hi")])
    wait(client, batch.id)
    jobs = httpx.get(f"{daemon.url}/v1/jobs", params={"pipeline": "openai_batch"}).json()["data"]
    assert jobs and {j["priority"] for j in jobs} == {-100}
    job = httpx.get(f"{daemon.url}/v1/jobs/{jobs[0]['id']}").json()
    assert job["params"] == {"batch_id": batch.id} and job["state"] == "succeeded"
    assert job["result"]["status"] == "completed"
    names = [p["name"] for p in httpx.get(f"{daemon.url}/v1/pipelines").json()["data"]]
    assert "openai_batch" not in names
    r = httpx.post(f"{daemon.url}/v1/pipelines/openai_batch", json={"batch_id": batch.id})
    assert r.status_code == 404


def test_the_web_ui_lists_batches_with_their_counts(daemon, client):
    batch = create(client, "/v1/embeddings", [embedding_line(f"e{i}", "mock-embed", "hi") for i in range(3)])
    wait(client, batch.id)
    page = httpx.get(f"{daemon.url}/ui/batches").text
    assert batch.id in page and "3 done · 0 failed · 3 in all" in page
    rows = httpx.get(f"{daemon.url}/ui/batches/rows").text
    assert batch.id in rows and "completed" in rows


# --- model grouping and restarts -----------------------------------------------------------------

#: Two models that do not fit on the device together: every switch between them is an eviction.
GROUPING = """
[daemon]
host = "127.0.0.1"

[scheduler.devices.cpu]
budget = "100MB"

[[models]]
id = "mock-a"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 60 }

[[models]]
id = "mock-b"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 60 }

[[models]]
id = "mock-slow"
provider = "mock"
capabilities = ["chat"]
options = { latency_ms = 150 }

[batches]
concurrency = 2
"""


@pytest.fixture
def own_daemon(tmp_path):
    warm_validators()  # reading OpenAI's document takes seconds: not while a batch is timed
    d = Daemon(write_config(tmp_path / "loom.toml", GROUPING), tmp_path / "data").start()
    yield d
    d.stop()


def loads(daemon: Daemon, model: str) -> float:
    text = httpx.get(f"{daemon.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("loom_model_loads_total{") and f'model="{model}"' in line
    )


def test_lines_are_grouped_by_model_so_each_loads_once(own_daemon):
    with openai_client(own_daemon) as client:
        lines = [chat_line(f"l{i}", "mock-a" if i % 2 else "mock-b") for i in range(12)]  # alternating
        done = wait(client, create(client, "/v1/chat/completions", lines).id)
        assert done.status == "completed" and done.request_counts.completed == 12
        assert done.model is None  # two models: OpenAI's one-model field stays empty
        out, _ = check_output(client, done, "/v1/chat/completions")
        assert [x["custom_id"] for x in out] == [f"l{i}" for i in range(12)]
        assert {x["response"]["body"]["model"] for x in out} == {"mock-a", "mock-b"}
    assert loads(own_daemon, "mock-a") == 1 and loads(own_daemon, "mock-b") == 1


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
def test_a_restart_mid_batch_runs_no_finished_line_again(own_daemon, kill):
    n = 24
    with openai_client(own_daemon) as client:
        batch = create(client, "/v1/chat/completions", [chat_line(f"r{i}", "mock-slow") for i in range(n)])
        before = wait(client, batch.id, until=lambda b: b.request_counts.completed >= 6).request_counts.completed
    own_daemon.restart(kill=kill)
    with openai_client(own_daemon) as client:
        done = wait(client, batch.id)
        assert done.status == "completed" and done.request_counts.model_dump() == {
            "total": n,
            "completed": n,
            "failed": 0,
        }
        out, _ = check_output(client, done, "/v1/chat/completions")
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(n))
    # What the restarted daemon found finished (from its durable record, before running anything)...
    job_id = next(j["id"] for j in httpx.get(f"{own_daemon.url}/v1/jobs").json()["data"] if j["priority"] == -100)
    events = httpx.get(f"{own_daemon.url}/v1/jobs/{job_id}/events").text
    sent = [json.loads(line[6:]) for line in events.splitlines() if line.startswith("data: ")]
    resumed = [e["data"] for e in sent if e["type"] == "batch"][-1]
    assert resumed["finished"] >= before and resumed["to_run"] == n - resumed["finished"] > 0
    # ... and the provider calls it made: exactly the lines left, so no finished line ran twice.
    assert finished_calls(httpx.get(f"{own_daemon.url}/metrics").text, "mock-slow") == resumed["to_run"]


def test_the_output_files_are_owned_and_listed_as_batch_output(own_daemon):
    with openai_client(own_daemon) as client:
        done = wait(client, create(client, "/v1/chat/completions", [chat_line("x", "mock-a")]).id)
        outputs = [f.id for f in client.files.list(purpose="batch_output")]
        assert done.output_file_id in outputs
        assert lines_of(client, done.output_file_id)[0]["custom_id"] == "x"
