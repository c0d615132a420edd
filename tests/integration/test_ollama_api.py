"""Ollama's API (``/api``) driven by Ollama's own client, the ``ollama`` package, against a live
daemon: the shipped config (SmolLM2 GGUF and the mock models) in a config file of its own (copy,
delete and pull edit it), and a local stand-in for the Hugging Face hub for ``/api/pull``.

Every answer is parsed by the package's pydantic models (``ChatResponse``, ``GenerateResponse``,
``ShowResponse``, ``ListResponse``, ``ProcessResponse``, ``EmbedResponse``,
``ProgressResponse``): they are the schema, not shapes written here.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import math
import shutil

import httpx
import ollama
import pytest
from PIL import Image

from tests.conftest import ROOT, Daemon
from tests.integration.cli_support import SMOLLM2
from tests.integration.fake_hub import FakeHub

SMOL = "smollm2-135m:latest"
REPO = "acme/SmolLM2-135M-Instruct-GGUF"
Q4 = "SmolLM2-135M-Instruct.Q4_1.gguf"
Q8 = "SmolLM2-135M-Instruct.Q8_0.gguf"
GREEDY = {"temperature": 0, "seed": 7}


@pytest.fixture(scope="module")
def hub():
    fake = FakeHub()
    fake.add_repo(REPO, {Q4: SMOLLM2, Q8: SMOLLM2})
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, hub):
    tmp = tmp_path_factory.mktemp("ollama-api")
    config = tmp / "loom.toml"
    shutil.copy(ROOT / "plugins.toml", config)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    d = Daemon(config, tmp / "data", env=env).start()
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    return ollama.Client(host=daemon.url, timeout=180)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def assert_measured(r) -> None:
    """The final object's counts and durations are measured: present and not zero."""
    assert r.done is True and r.done_reason in ("stop", "length")
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert getattr(r, name) > 0, name
    assert r.prompt_eval_count > 0 and r.eval_count > 0
    assert r.total_duration >= r.eval_duration


# --- models ------------------------------------------------------------------------------------


def test_version_tags_and_show(daemon, client):
    version = httpx.get(f"{daemon.url}/api/version").json()
    assert set(version) == {"version"} and version["version"].count(".") == 2

    listed = client.list()
    assert isinstance(listed, ollama.ListResponse)
    by_name = {m.model: m for m in listed.models}
    # Each name of a text model, untagged ones tagged :latest; the image model is not a text model.
    assert {SMOL, "default:latest", "mock-vision:latest"} <= set(by_name)
    assert not any(name.startswith("mock-image") for name in by_name)
    smol = by_name[SMOL]
    assert smol.size == SMOLLM2.stat().st_size and len(smol.digest) == 64
    assert by_name["default:latest"].digest == smol.digest  # an alias is the same weights
    d = smol.details
    assert (d.format, d.family, d.quantization_level, d.parameter_size) == ("gguf", "llama", "Q4_1", "134.52M")

    shown = client.show(SMOL)
    assert isinstance(shown, ollama.ShowResponse)
    assert shown.capabilities == ["completion", "tools", "embedding"]  # no FIM tokens: no insert
    info = shown.modelinfo
    assert info["general.architecture"] == "llama"
    assert info["llama.context_length"] == 2048  # the context a request gets (n_ctx)
    assert info["general.parameter_count"] == 134515008
    assert info["llama.block_count"] == 30 and info["tokenizer.ggml.model"] == "gpt2"
    assert "<|im_start|>" in shown.template and "num_ctx 2048" in shown.parameters
    assert shown.details.quantization_level == "Q4_1" and shown.modified_at is not None
    assert client.show("smollm2-135m").capabilities == shown.capabilities  # Loom's own id as it is

    vision = client.show("mock-vision")
    assert vision.capabilities == ["completion", "tools", "vision", "embedding"]
    assert vision.details.format == "mock"


def test_an_unknown_model_is_404_in_ollamas_shape(daemon, client):
    for call in (
        lambda: client.show("no-such-model"),
        lambda: client.chat("no-such-model", messages=[{"role": "user", "content": "hi"}]),
        lambda: client.generate("no-such-model:7b", "hi"),
        lambda: client.embed("no-such-model", "hi"),
    ):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == 404 and "not found" in e.value.error
    r = httpx.post(f"{daemon.url}/api/show", json={"model": "nope"})
    assert r.status_code == 404 and r.json() == {"error": "model 'nope' not found"}


# --- chat and generate ---------------------------------------------------------------------------


def test_chat_plain_and_streamed_agree(client):
    messages = [{"role": "user", "content": "Name a colour."}]
    options = {**GREEDY, "num_predict": 12}
    plain = client.chat(SMOL, messages=messages, options=options)
    assert isinstance(plain, ollama.ChatResponse)
    assert plain.model == SMOL and plain.message.role == "assistant" and plain.message.content
    assert_measured(plain)
    assert plain.eval_count <= 12

    parts = list(client.chat(SMOL, messages=messages, options=options, stream=True))
    assert all(isinstance(p, ollama.ChatResponse) for p in parts)
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content for p in parts) == plain.message.content
    last = parts[-1]
    assert_measured(last)
    assert last.eval_count == plain.eval_count
    # The second asking found the prompt in the slot's cache: Ollama counts only what it evaluated.
    assert 1 <= last.prompt_eval_count <= plain.prompt_eval_count


def test_a_request_without_stream_streams_ndjson(daemon):
    body = {"model": SMOL, "messages": [{"role": "user", "content": "Hi"}], "options": {"num_predict": 6}}
    with httpx.stream("POST", f"{daemon.url}/api/chat", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) >= 2 and lines[-1]["done"] is True and lines[-1]["eval_count"] >= 1
    assert r.headers["x-loom-model"] == "smollm2-135m"


def test_an_error_after_the_first_line_is_a_last_error_line(daemon):
    body = {"model": SMOL, "prompt": "Tell a long story.", "options": {"num_predict": 1000, "seed": 1}}
    with httpx.stream("POST", f"{daemon.url}/api/generate", json=body, timeout=120) as r:
        lines = r.iter_lines()
        first = json.loads(next(lines))
        assert first["done"] is False
        cancel = httpx.post(f"{daemon.url}/admin/work/{r.headers['x-loom-work-id']}/cancel", timeout=30)
        assert cancel.status_code == 200
        rest = [json.loads(line) for line in lines if line]
    assert set(rest[-1]) == {"error"} and "cancel" in rest[-1]["error"]
    assert not any(line.get("done") for line in rest)


def test_generate_plain_streamed_raw_and_system(client):
    plain = client.generate(SMOL, "Write one word.", options={**GREEDY, "num_predict": 8})
    assert isinstance(plain, ollama.GenerateResponse) and plain.response
    assert_measured(plain)
    parts = list(client.generate(SMOL, "Write one word.", options={**GREEDY, "num_predict": 8}, stream=True))
    assert "".join(p.response for p in parts) == plain.response and parts[-1].done

    raw = client.generate(SMOL, "The capital of France is", raw=True, options={**GREEDY, "num_predict": 6})
    assert_measured(raw)
    # Raw is the prompt as written: fewer prompt tokens than the same words in the chat template.
    templated = client.generate(SMOL, "The capital of France is", options={**GREEDY, "num_predict": 6})
    assert raw.prompt_eval_count < templated.prompt_eval_count
    with_system = client.generate(
        SMOL, "The capital of France is", system="Answer in French.", options={**GREEDY, "num_predict": 6}
    )
    assert with_system.prompt_eval_count != templated.prompt_eval_count


def test_format_json_schema_constrains_the_answer(client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = client.chat(
        SMOL,
        messages=[{"role": "user", "content": "Invent a person."}],
        format=schema,
        options={**GREEDY, "num_predict": 100},
    )
    person = json.loads(r.message.content)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)
    r = client.generate(SMOL, "Reply with a JSON object.", format="json", options={**GREEDY, "num_predict": 200})
    assert r.done_reason == "stop" and isinstance(json.loads(r.response), dict)


def test_a_tool_call_and_its_result(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat("mock-vision", messages=messages, tools=tools)
    (call,) = r.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    assert r.done_reason == "stop"
    # Streamed, the call comes whole in one line before the last.
    parts = list(client.chat("mock-vision", messages=messages, tools=tools, stream=True))
    (with_calls,) = [p for p in parts if p.message.tool_calls]
    assert with_calls.message.tool_calls[0].function.arguments == call.function.arguments
    # The result goes back as a tool message naming the function; the model answers in text.
    messages += [
        r.message.model_dump(exclude_none=True),
        {"role": "tool", "content": "22 C", "tool_name": "get_weather"},
    ]
    answer = client.chat("mock-vision", messages=messages, tools=tools)
    assert answer.message.content and not answer.message.tool_calls

    bad = [{"role": "tool", "content": "22 C", "tool_name": "get_weather"}]
    with pytest.raises(ollama.ResponseError) as e:
        client.chat("mock-vision", messages=[*messages[:1], *bad], tools=tools)
    assert e.value.status_code == 400 and "no earlier assistant message" in e.value.error


def test_images_go_to_a_vision_model(client):
    r = client.chat("mock-vision", messages=[{"role": "user", "content": "What is this?", "images": [png()]}])
    assert r.message.content
    # SmolLM2 cannot see: an image-bearing chat takes the configured vision route, as on /v1.
    routed = client.generate(SMOL, "What is this?", images=[png()])
    assert routed.response
    with pytest.raises(ollama.ResponseError) as e:
        client.chat("mock-vision", messages=[{"role": "user", "content": "x", "images": ["bm90IGFuIGltYWdl"]}])
    assert e.value.status_code == 400 and "messages[0].images[0]" in e.value.error


# --- options and refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"options": {"num_predikt": 5}}, "unknown option 'num_predikt'"),
        ({"options": {"num_gpu": 1}}, "options.num_gpu is a load-time option"),
        ({"options": {"mirostat": 2}}, "options.mirostat is not supported"),
        ({"options": {"num_ctx": 4096}}, "options.num_ctx=4096 is more than this model's context of 2048"),
        ({"options": {"temperature": 9}}, "options.temperature"),
        ({"options": {"num_predict": 0}}, "options.num_predict must be a positive integer"),
        ({"think": True}, "think: model 'smollm2-135m' does not support thinking"),
        ({"keep_alive": "soon"}, "keep_alive must be a number of seconds or a duration"),
    ],
)
def test_bad_options_are_400s_naming_them(client, kwargs, named):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(SMOL, messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert e.value.status_code == 400 and named in e.value.error


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"model": SMOL, "messages": [], "format": "yaml"}, 'format must be "json" or a JSON schema'),
        ({"model": SMOL, "messages": [], "temprature": 1}, "'temprature' is not supported"),
        ({"model": SMOL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": SMOL, "messages": [{"role": "system", "content": "x", "images": ["AA=="]}]}, "only user messages"),
    ],
)
def test_malformed_bodies_are_400s(daemon, body, named):
    r = httpx.post(f"{daemon.url}/api/chat", json=body, timeout=60)
    assert r.status_code == 400 and set(r.json()) == {"error"} and named in r.json()["error"]


def test_options_that_map(client):
    r = client.chat(
        SMOL,
        messages=[{"role": "user", "content": "Count: one, two,"}],
        options={
            "num_predict": 4,
            "top_k": 20,
            "top_p": 0.9,
            "min_p": 0.05,
            "repeat_penalty": 1.1,
            "seed": 3,
            "temperature": 0.7,
            "stop": ["\n\n"],
            "num_ctx": 1024,
            "num_batch": None,
        },
    )
    assert r.eval_count <= 4 and r.done_reason in ("stop", "length")
    assert client.chat(SMOL, messages=[{"role": "user", "content": "Hi"}], think=False, options={"num_predict": 2}).done


def test_logprobs(client):
    r = client.chat(
        SMOL, messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=2, options={"num_predict": 3}
    )
    assert len(r.logprobs) == r.eval_count
    first = r.logprobs[0]
    assert first.logprob <= 0 and len(first.top_logprobs) == 2
    assert "".join(lp.token for lp in r.logprobs) == r.message.content
    parts = list(client.generate(SMOL, "Hi", logprobs=True, options={"num_predict": 3}, stream=True))
    assert sum(len(p.logprobs or []) for p in parts) == parts[-1].eval_count


def test_suffix_needs_fill_in_the_middle_tokens(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(SMOL, "def add(a, b):", suffix="    return c")
    assert e.value.status_code == 400 and "has no fill-in-the-middle tokens" in e.value.error
    for kwargs, named in (
        ({"context": [1, 2]}, "context is not supported"),
        ({"template": "{{ .Prompt }}"}, "template"),
    ):
        with pytest.raises(ollama.ResponseError) as e:
            client.generate(SMOL, "hi", **kwargs)
        assert e.value.status_code == 400 and named in e.value.error


# --- embeddings ----------------------------------------------------------------------------------


def test_embed_and_the_older_embeddings(client):
    r = client.embed(SMOL, ["a cat", "a dog"])
    assert isinstance(r, ollama.EmbedResponse)
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert math.isclose(sum(x * x for x in r.embeddings[0]), 1.0, rel_tol=1e-4)
    assert r.prompt_eval_count > 0 and r.total_duration > 0 and r.load_duration > 0
    short = client.embed(SMOL, "a cat", dimensions=64)
    assert len(short.embeddings[0]) == 64
    assert math.isclose(sum(x * x for x in short.embeddings[0]), 1.0, rel_tol=1e-4)
    old = client.embeddings(SMOL, "a cat")
    assert isinstance(old, ollama.EmbeddingsResponse)
    assert old.embedding == pytest.approx(r.embeddings[0], abs=1e-5)
    with pytest.raises(ollama.ResponseError) as e:
        client.embed(SMOL, "x", dimensions=1000)
    assert e.value.status_code == 400 and "dimensions" in e.value.error


# --- residency -----------------------------------------------------------------------------------


def loaded(client) -> dict:
    ps = client.ps()
    assert isinstance(ps, ollama.ProcessResponse)
    return {m.model: m for m in ps.models}


def test_keep_alive_and_ps(client):
    r = client.generate(SMOL, keep_alive="10m")  # no prompt: load
    assert r.done_reason == "load" and r.response == ""
    model = loaded(client)[SMOL]
    assert model.size > 0 and model.size_vram == 0 and model.context_length == 2048
    left = (model.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 540 < left <= 600
    assert model.details.family == "llama" and len(model.digest) == 64

    client.chat(SMOL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2}, keep_alive=-1)
    forever = loaded(client)[SMOL].expires_at
    assert forever.year > 2200  # kept for ever, as Ollama shows it

    r = client.chat(SMOL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2}, keep_alive=0)
    assert r.done and SMOL not in loaded(client)  # answered, then unloaded

    client.chat(SMOL, messages=[], keep_alive="5m")
    assert SMOL in loaded(client)
    r = client.chat(SMOL, messages=[], keep_alive=0)
    assert r.done_reason == "unload" and SMOL not in loaded(client)
    with pytest.raises(ollama.ResponseError) as e:
        client.generate("mock-image", keep_alive=0)  # not a text model: nothing to load or unload
    assert e.value.status_code == 400 and "does not support generate" in e.value.error
    # Loaded by this request: its load is the load duration.
    fresh = client.chat(SMOL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    warm = client.chat(SMOL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    assert fresh.load_duration > warm.load_duration


# --- copy, delete, pull --------------------------------------------------------------------------


def test_copy_makes_an_alias_and_delete_removes_a_name(daemon, client):
    assert client.copy(SMOL, "my-smol:latest").status == "success"
    assert "my-smol:latest" in {m.model for m in client.list().models}
    assert 'aliases = ["default", "my-smol"]' in daemon.config.read_text()
    r = client.chat("my-smol", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    assert r.done and r.model == "my-smol"
    with pytest.raises(ollama.ResponseError) as e:
        client.copy(SMOL, "default")
    assert e.value.status_code == 400 and "already names model 'smollm2-135m'" in e.value.error

    assert client.delete("my-smol:latest").status == "success"
    names = {m.model for m in client.list().models}
    assert "my-smol:latest" not in names and SMOL in names  # the name goes, the model stays
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("my-smol")
    assert e.value.status_code == 404


def test_pull_from_the_hub_then_serve_and_delete(daemon, client, hub):
    name = f"hf.co/{REPO}:Q4_1"
    parts = list(client.pull(name, stream=True))
    assert all(isinstance(p, ollama.ProgressResponse) for p in parts)
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    sized = [p for p in parts if p.total]
    assert sized and sized[-1].completed == sized[-1].total == SMOLLM2.stat().st_size
    assert sized[-1].digest.startswith("sha256:")
    assert hub.gets(REPO, Q8) == []  # only the quantisation asked for

    assert name in {m.model for m in client.list().models}
    r = client.generate(name, "Hello", options={"num_predict": 3})
    assert r.done and r.model == name
    assert client.pull(name).status == "success"  # again: already there

    # Two quantisations and no tag: which one is the question, in the stream.
    with pytest.raises(ollama.ResponseError) as e:
        list(client.pull(f"hf.co/{REPO}", stream=True))
    assert "2 quantisations" in e.value.error
    for bad, named in (("llama3.2", "not from Ollama's registry"), (name, "insecure")):
        with pytest.raises(ollama.ResponseError) as e:
            client.pull(bad, insecure=bad == name)
        assert e.value.status_code == 400 and named in e.value.error

    assert client.delete(name).status == "success"
    assert name not in {m.model for m in client.list().models}
    assert f'id = "{name}"' not in daemon.config.read_text()


# --- the async client ----------------------------------------------------------------------------


def test_the_async_client(daemon):
    async def main():
        client = ollama.AsyncClient(host=daemon.url, timeout=120)
        listed = await client.list()
        parts = [
            p
            async for p in await client.chat(
                SMOL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4}, stream=True
            )
        ]
        embedded = await client.embed("mock-vision", ["a", "b"])
        return listed, parts, embedded

    listed, parts, embedded = asyncio.run(main())
    assert SMOL in {m.model for m in listed.models}
    assert parts[-1].done and parts[-1].eval_count >= 1
    assert len(embedded.embeddings) == 2


# --- keys ----------------------------------------------------------------------------------------


def test_keys_guard_the_api(keyed_daemon):
    r = httpx.get(f"{keyed_daemon.url}/api/tags")
    assert r.status_code == 401 and set(r.json()) == {"error"}
    user = ollama.Client(host=keyed_daemon.url, headers={"Authorization": "Bearer user-secret-1"})
    assert "mock-chat:latest" in {m.model for m in user.list().models}
    assert user.chat("mock-alias", messages=[{"role": "user", "content": "Hi"}]).message.content
    with pytest.raises(ollama.ResponseError) as e:
        user.delete("mock-alias")
    assert e.value.status_code == 403  # changing the models takes an admin key
    with pytest.raises(ollama.ResponseError) as e:
        user.chat("mock-broken", messages=[{"role": "user", "content": "Hi"}])
    assert e.value.status_code == 502 and "caught fire" in e.value.error
    b64 = base64.b64encode(png()).decode()
    assert user.chat("mock-alias", messages=[{"role": "user", "content": "?", "images": [b64]}]).message.content
