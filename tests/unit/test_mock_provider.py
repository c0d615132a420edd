"""The mock provider: deterministic output for every capability, and the behaviours its options
simulate (latency, failures, memory, out-of-memory loads, cancellation)."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import subprocess
import sys
import threading
import time

import msgspec
import pluggy
import pytest
from loom.plugins import mock as mock_plugin
from loom.plugins.mock import MockProvider
from loom.sdk import (
    Cancelled,
    Capability,
    ImageJob,
    InvalidRequest,
    ModelSpec,
    OutOfMemory,
    ProviderError,
    RunContext,
    hookspecs,
)
from loom.sdk.protocols import (
    ChatProvider,
    CompletionProvider,
    EmbeddingProvider,
    ImageProvider,
    TranslationProvider,
    VisionProvider,
)
from loom.sdk.types import ChatCompletionRequest, CompletionRequest
from PIL import Image

# --- helpers ----------------------------------------------------------------------------------


def make(**options) -> MockProvider:
    spec = ModelSpec(id="mock-x", provider="mock", options=msgspec.convert(options, MockProvider.Options))
    return MockProvider(spec)


def chat_request(content="Tell me about rivers", **fields) -> ChatCompletionRequest:
    body = {"model": "mock-x", "messages": [{"role": "user", "content": content}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


def run_chat(provider, request, ctx=None):
    chunks = list(provider.chat(request, ctx or RunContext()))
    return "".join(c.text for c in chunks), chunks


def complete(provider, prompt="Once upon a time", ctx=None, **fields):
    request = msgspec.convert({"model": "mock-x", "prompt": prompt, **fields}, CompletionRequest)
    chunks = list(provider.complete(prompt, request, ctx or RunContext()))
    return "".join(c.text for c in chunks), chunks


def png(colour=(220, 30, 30), size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def images(provider, ctx=None, **job):
    job = {"prompt": "a red apple on a table", "width": 64, "height": 48, **job}
    return provider.generate_images(ImageJob(**job), ctx or RunContext())


def conforms(value, schema) -> bool:
    """Enough of JSON-schema validation for the schemas used below."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return (
            isinstance(value, dict)
            and all(name in value for name in schema.get("required", []))
            and all(conforms(value[k], props[k]) for k in value if k in props)
        )
    if kind == "array":
        return (
            isinstance(value, list)
            and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10**9)
            and all(conforms(v, schema.get("items", {})) for v in value)
        )
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf)
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf)
    if kind == "string":
        return isinstance(value, str) and len(value) <= schema.get("maxLength", 10**9)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 18, "maximum": 30},
        "height": {"type": "number", "minimum": 1.5, "maximum": 2.0},
        "member": {"type": "boolean"},
        "colour": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "colour", "tags", "address"],
    "additionalProperties": False,
}

# --- registration and options -----------------------------------------------------------------


def test_registers_through_the_hook_and_declares_every_capability():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(mock_plugin)
    registered = []
    pm.hook.register_providers(register=registered.append)
    assert registered == [MockProvider]
    assert MockProvider.name == "mock" and MockProvider.local
    assert MockProvider.capabilities == frozenset(Capability)
    provider = make()
    for protocol in (
        ChatProvider,
        CompletionProvider,
        EmbeddingProvider,
        ImageProvider,
        VisionProvider,
        TranslationProvider,
    ):
        assert isinstance(provider, protocol)


def test_options_are_strict_and_have_defaults():
    options = msgspec.convert({}, MockProvider.Options)
    assert options.dimensions == 384 and options.memory_mb == 64 and options.fail_rate == 0
    assert "eng_Latn" in options.languages and "fr" in options.languages
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"latency": 5}, MockProvider.Options)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"fail_rate": 2}, MockProvider.Options)


# --- chat -------------------------------------------------------------------------------------


def test_chat_is_deterministic_per_seed():
    provider = make()
    first, _ = run_chat(provider, chat_request(seed=1))
    assert first.startswith("Mock reply to 'Tell me about rivers':")
    assert run_chat(provider, chat_request(seed=1))[0] == first
    assert run_chat(provider, chat_request(seed=2))[0] != first
    # No seed: still reproducible, derived from the input.
    unseeded = run_chat(provider, chat_request())[0]
    assert run_chat(make(), chat_request())[0] == unseeded
    assert run_chat(provider, chat_request("Something else"))[0] != unseeded


def test_chat_streams_words_and_reports_usage_last():
    _text, chunks = run_chat(make(), chat_request("one two three", seed=3))
    *pieces, last = chunks
    assert len(pieces) > 5 and all(p.finish_reason is None for p in pieces)
    assert all(len(p.text.split()) == 1 for p in pieces)
    assert (last.text, last.finish_reason) == ("", "stop")
    assert last.prompt_tokens == 3 and last.completion_tokens == len(pieces)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_token_limit_cuts_with_length(field):
    full, _ = run_chat(make(), chat_request(seed=4))
    text, chunks = run_chat(make(), chat_request(seed=4, **{field: 5}))
    assert len(chunks) == 6 and chunks[-1].finish_reason == "length"
    assert chunks[-1].completion_tokens == 5
    assert full.startswith(text) and len(text.split()) == 5


def test_chat_stops_before_a_stop_string():
    full, _ = run_chat(make(), chat_request(seed=5))
    stop = full.split()[6]
    text, chunks = run_chat(make(), chat_request(seed=5, stop=["never-there", stop]))
    assert text == full[: full.index(stop)]
    assert stop not in text and chunks[-1].finish_reason == "stop"
    assert chunks[-1].stop_sequence == stop  # which one matched (the Messages API reports it)
    _, plain = run_chat(make(), chat_request(seed=5))
    assert plain[-1].stop_sequence is None


def test_fixed_reply_option():
    text, chunks = run_chat(make(reply="Hello there, tester."), chat_request(max_tokens=2))
    assert text == "Hello there," and chunks[-1].finish_reason == "length"


def test_json_object_mode_gives_a_json_object():
    for seed in range(5):
        text, _ = run_chat(make(), chat_request(seed=seed, response_format={"type": "json_object"}))
        assert isinstance(json.loads(text), dict)


def test_json_schema_mode_validates_against_the_schema():
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    outputs = set()
    for seed in range(20):
        text, chunks = run_chat(make(), chat_request(seed=seed, response_format=fmt))
        value = json.loads(text)
        assert conforms(value, SCHEMA), value
        assert set(value) <= set(SCHEMA["properties"])
        assert chunks[-1].finish_reason == "stop"
        outputs.add(text)
    assert len(outputs) > 1  # the seed matters here too


def test_chat_describes_attached_images():
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data_uri(png((220, 30, 30), (40, 24)))}},
    ]
    text, _ = run_chat(make(), chat_request(content, seed=1))
    assert "40x24" in text and "red" in text
    bad = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    with pytest.raises(InvalidRequest) as err:
        run_chat(make(), chat_request(bad))
    assert err.value.param == "messages"


def test_cancel_mid_stream():
    ctx = RunContext()
    stream = make(token_latency_ms=1).chat(chat_request(seed=1), ctx)
    next(stream), next(stream)
    ctx.cancel()
    with pytest.raises(Cancelled):
        next(stream)


# --- completions ------------------------------------------------------------------------------


def test_completion_is_deterministic_and_honours_max_tokens_and_stop():
    provider = make()
    text, chunks = complete(provider, seed=1)
    assert text.startswith(" ") and "Once upon" not in text  # echo is the daemon's job
    assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 16  # default
    assert chunks[-1].prompt_tokens == 4
    assert complete(provider, seed=1)[0] == text
    assert complete(provider, seed=2)[0] != text
    longer, _ = complete(provider, seed=1, max_tokens=30)
    assert longer.startswith(text)
    stop = text.split()[3]
    cut, chunks = complete(provider, seed=1, stop=stop)
    assert cut == text[: text.index(stop)] and chunks[-1].finish_reason == "stop"


# --- embeddings -------------------------------------------------------------------------------


def test_embeddings_are_unit_length_deterministic_and_batch_independent():
    provider = make(dimensions=64)
    texts = ["the quick brown fox", "a slow green turtle", ""]
    result = provider.embed(texts, RunContext())
    assert result.prompt_tokens == 8
    assert len(result.vectors) == 3 and all(len(v) == 64 for v in result.vectors)
    for v in result.vectors:
        assert math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-9)
    alone = make(dimensions=64).embed(["a slow green turtle"], RunContext()).vectors[0]
    assert alone == result.vectors[1]
    assert result.vectors[0] != result.vectors[1]
    msgspec.json.encode(result)  # plain Python floats, encodable as they are


def test_texts_sharing_words_embed_closer():
    texts = ["red apple pie", "red apple tart", "quantum tax law"]
    a, b, c = make().embed(texts, RunContext()).vectors

    def cosine(x, y):
        return math.fsum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(a, b) > cosine(a, c) + 0.3


def test_image_embeddings_come_from_pixels():
    provider = make(dimensions=32)
    red, blue = data_uri(png((220, 30, 30))), data_uri(png((30, 70, 210)))
    vectors = provider.embed([red, blue, red], RunContext()).vectors
    assert vectors[0] == vectors[2] != vectors[1]
    assert math.isclose(math.fsum(x * x for x in vectors[1]), 1.0, rel_tol=1e-9)
    with pytest.raises(InvalidRequest) as err:
        provider.embed(["data:image/png;base64,bm90IGFuIGltYWdl"], RunContext())
    assert err.value.param == "input"


# --- images -----------------------------------------------------------------------------------


def test_images_are_pngs_of_the_exact_size_and_follow_the_seed():
    provider = make()
    progress = []
    ctx = RunContext(on_progress=lambda done, total, msg: progress.append((done, total, msg)))
    first = images(provider, ctx, n=2, seed=7, steps=3)
    assert progress == [(1, 3, "denoising"), (2, 3, "denoising"), (3, 3, "denoising")]
    assert len(first) == 2 and first[0] != first[1]
    for data in first:
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.size == (64, 48)
    assert images(provider, n=2, seed=7) == first
    assert images(provider, n=2, seed=8) != first
    assert images(provider) == images(provider)  # no seed: derived from the prompt
    assert images(provider, width=16, height=4096)[0][:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("size", [(8, 64), (64, 4104), (60, 64), (64, 100)])
def test_invalid_sizes_are_refused(size):
    with pytest.raises(InvalidRequest) as err:
        images(make(), width=size[0], height=size[1])
    assert err.value.param == "size"


def test_image_to_image_blends_the_init_image():
    init = png((30, 70, 210), (20, 20))
    kept = Image.open(io.BytesIO(images(make(), init_image=init, strength=0.0)[0])).convert("RGB")
    assert kept.size == (64, 48) and kept.getpixel((10, 10)) == (30, 70, 210)
    black = io.BytesIO()
    Image.new("L", (64, 48), 0).save(black, format="PNG")
    masked = images(make(), init_image=init, strength=1.0, mask=black.getvalue())[0]
    assert Image.open(io.BytesIO(masked)).convert("RGB").getcolors() == [(64 * 48, (30, 70, 210))]
    changed = images(make(), init_image=init, strength=0.8, seed=1)[0]
    assert Image.open(io.BytesIO(changed)).convert("RGB").getpixel((60, 44)) != (30, 70, 210)
    with pytest.raises(InvalidRequest) as err:
        images(make(), init_image=b"not an image")
    assert err.value.param == "image"


def test_cancel_stops_image_generation():
    ctx = RunContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        images(make(), ctx)
    calls = []

    def on_progress(done, total, message):
        calls.append(done)
        if done == 2:
            ctx2.cancel()

    ctx2 = RunContext(on_progress=on_progress)
    with pytest.raises(Cancelled):
        images(make(), ctx2, steps=10)
    assert calls == [1, 2]


def test_latency_is_cancellable():
    ctx = RunContext()
    threading.Timer(0.05, ctx.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        make(latency_ms=10_000).embed(["slow"], ctx)
    assert time.monotonic() - started < 2


# --- vision -----------------------------------------------------------------------------------


def test_describe_mentions_size_colour_and_brightness():
    provider = make()
    image = png((220, 30, 30), (48, 32))
    brief = provider.describe(image, None, "brief", None, RunContext())
    normal = provider.describe(image, None, "normal", None, RunContext())
    detailed = provider.describe(image, None, "detailed", None, RunContext())
    assert brief.count(".") == 1 and "48x32" in brief and "red" in brief
    assert "dark" in normal or "bright" in normal
    assert len(brief) < len(normal) < len(detailed)
    assert provider.describe(image, None, "detailed", None, RunContext()) == detailed
    assert provider.describe(image, "What fruit?", "normal", None, RunContext()) != normal
    short = provider.describe(image, None, "detailed", 4, RunContext())
    assert len(short.split()) == 4 and detailed.startswith(short)
    with pytest.raises(InvalidRequest) as err:
        provider.describe(b"garbage", None, "normal", None, RunContext())
    assert err.value.param == "image"


def test_scores_are_bounded_deterministic_and_favour_matching_text():
    provider = make()
    red = png((220, 30, 30))
    match = provider.score(red, "a red square", RunContext())
    other = provider.score(red, "a blue square", RunContext())
    assert 0 <= other.clip < match.clip <= 1
    assert 0 <= match.aesthetic <= 10 and match.aesthetic == other.aesthetic
    assert provider.score(red, "a red square", RunContext()) == match
    encoded = json.loads(msgspec.json.encode(match))  # plain floats, not numpy's
    assert encoded == {"clip": match.clip, "aesthetic": match.aesthetic}
    with pytest.raises(InvalidRequest):
        provider.score(b"garbage", "x", RunContext())


# --- translation ------------------------------------------------------------------------------


def test_translate_changes_the_text_deterministically():
    provider = make()
    out = provider.translate(["hello big world", ""], "eng_Latn", "fra_Latn", RunContext())
    assert out == ["[fra_Latn] world big hello", ""]
    assert provider.translate(["hello big world"], "en", "de", RunContext()) == ["[de] world big hello"]


@pytest.mark.parametrize("source,target,param", [("xx", "fr", "source"), ("en", "tlh", "target")])
def test_translate_refuses_unknown_languages(source, target, param):
    with pytest.raises(InvalidRequest) as err:
        make().translate(["hi"], source, target, RunContext())
    assert err.value.param == param
    assert repr(source if param == "source" else target) in err.value.message
    assert "eng_Latn" in err.value.message
    assert make(languages=["xx", "tlh", "fr", "en"]).translate(["hi"], source, target, RunContext())


# --- failures, memory, loading ----------------------------------------------------------------


def test_fail_rate_fails_deterministically():
    with pytest.raises(ProviderError, match="boom"):
        make(fail_rate=1.0, fail_message="boom").embed(["x"], RunContext())
    with pytest.raises(ProviderError):
        run_chat(make(fail_rate=1.0), chat_request())
    flaky = make(fail_rate=0.5)

    def fails(text: str) -> bool:
        try:
            flaky.translate([text], "en", "fr", RunContext())
        except ProviderError:
            return True
        return False

    outcomes = [fails(f"text {i}") for i in range(40)]
    assert any(outcomes) and not all(outcomes)
    assert outcomes == [fails(f"text {i}") for i in range(40)]


def test_memory_is_reported_while_loaded():
    provider = make(memory_mb=1.5, load_seconds=0.05)
    assert provider.estimate_bytes() == int(1.5 * 2**20)
    assert provider.memory_bytes() == 0
    started = time.monotonic()
    provider.load("cpu")
    assert time.monotonic() - started >= 0.05
    assert provider.memory_bytes() == int(1.5 * 2**20) and provider.device == "cpu"
    provider.unload()
    assert provider.memory_bytes() == 0 and provider.device is None


def test_oom_on_load():
    provider = make(oom_on_load=True)
    with pytest.raises(OutOfMemory):
        provider.load("cuda:0")
    assert provider.memory_bytes() == 0


def test_output_does_not_depend_on_the_process_hash_seed():
    script = (
        "import msgspec; from loom.plugins.mock import MockProvider; from loom.sdk import *;"
        "from loom.sdk.types import ChatCompletionRequest as R;"
        "p = MockProvider(ModelSpec(id='m', provider='mock'));"
        "r = msgspec.convert({'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}]}, R);"
        "print(''.join(c.text for c in p.chat(r, RunContext())));"
        "print(p.embed(['hi'], RunContext()).vectors[0][:3])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
