"""What the ollama provider sends to Ollama and how it reads the answers, against the fake."""

from __future__ import annotations

import asyncio
import base64

import msgspec
import pytest
from loom.sdk import (
    CapabilityNotSupported,
    InvalidRequest,
    ModelSpec,
    OutOfMemory,
    ProviderError,
    RunContext,
    Unavailable,
    UnsupportedParameter,
)
from loom.sdk.testing import free_port, make_png
from loom.sdk.types import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ImagePart,
    ImageURL,
    JSONObjectFormat,
    JSONSchemaFormat,
    JSONSchemaSpec,
    TextPart,
    message,
)
from loom_ollama import OllamaOptions, OllamaProvider, PluginOptions
from loom_ollama.options import resolve_host


def provider(url: str, plugin: PluginOptions | None = None, **options) -> OllamaProvider:
    options.setdefault("model", "tiny")
    if url:
        options.setdefault("host", url)
    spec = ModelSpec(id="o", provider="ollama", options=OllamaOptions(**options), plugin_options=plugin)
    return OllamaProvider(spec)


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


def chat(p: OllamaProvider, content="Hello there", **kw):
    return chat_messages(p, [message("user", content=content)], **kw)


def chat_messages(p: OllamaProvider, messages: list[ChatMessage], **kw):
    request = ChatCompletionRequest(model="o", messages=messages, **kw)
    return asyncio.run(collect(p.chat(request, RunContext())))


def test_chat_maps_openai_parameters_to_ollama_options(fake_ollama):
    p = provider(fake_ollama.url, num_ctx=4096, keep_alive="10m")
    chunks = chat(p, max_tokens=5, seed=7, temperature=0.3, top_p=0.9, stop=["\n\n"], presence_penalty=0.5)
    body = fake_ollama.bodies("/api/chat")[-1]
    assert body["model"] == "tiny" and body["stream"] is True and body["keep_alive"] == "10m"
    assert body["options"] == {
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.5,
        "num_predict": 5,
        "stop": ["\n\n"],
        "num_ctx": 4096,
    }
    assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 5


def test_developer_role_is_system_and_images_go_inline(fake_ollama):
    png = make_png(8, 8)
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    messages = [
        message("developer", content="Be brief."),
        message("user", content=[TextPart(text="What is this?"), ImagePart(image_url=ImageURL(url=uri))]),
    ]
    chat_messages(provider(fake_ollama.url), messages)
    sent = fake_ollama.bodies("/api/chat")[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1] == {"role": "user", "content": "What is this?", "images": [base64.b64encode(png).decode()]}


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://example.com/cat.png", UnsupportedParameter),
        ("data:image/png;base64,%%%", InvalidRequest),
        ("data:image/png;base64," + base64.b64encode(b"plain text").decode(), InvalidRequest),
    ],
)
def test_bad_images_are_refused_before_ollama_sees_them(fake_ollama, url, error):
    before = len(fake_ollama.requests)
    picture = message("user", content=[ImagePart(image_url=ImageURL(url=url))])
    with pytest.raises(error):
        chat_messages(provider(fake_ollama.url), [picture])
    assert len(fake_ollama.requests) == before


def test_response_formats(fake_ollama):
    p = provider(fake_ollama.url)
    chat(p, response_format=JSONObjectFormat())
    assert fake_ollama.bodies("/api/chat")[-1]["format"] == "json"
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    fmt = JSONSchemaFormat(json_schema=JSONSchemaSpec(name="a", schema=schema))
    text = "".join(c.text for c in chat(p, response_format=fmt))
    assert fake_ollama.bodies("/api/chat")[-1]["format"] == schema
    assert "answer" in msgspec.json.decode(text)


def test_completion_is_raw_generate(fake_ollama):
    request = CompletionRequest(model="o", prompt="Once upon a time", max_tokens=3, seed=1)
    chunks = asyncio.run(collect(provider(fake_ollama.url).complete("Once upon a time", request, RunContext())))
    body = fake_ollama.bodies("/api/generate")[-1]
    assert body["prompt"] == "Once upon a time" and body["raw"] is True and body["options"]["num_predict"] == 3
    assert chunks[-1].prompt_tokens == 5 and chunks[-1].completion_tokens == 3


def test_embeddings_request_and_usage(fake_ollama):
    result = asyncio.run(provider(fake_ollama.url, model="embedder").embed(["a b", "c"], RunContext()))
    assert len(result.vectors) == 2 and result.prompt_tokens == 3
    assert fake_ollama.bodies("/api/embed")[-1] == {"model": "embedder", "input": ["a b", "c"], "truncate": True}


def test_load_preloads_and_reads_size_unload_frees(fake_ollama):
    p = provider(fake_ollama.url, model="embedder")
    p.load("remote")
    assert "embedder" in fake_ollama.loaded and p.memory_bytes() == 45_678_901
    assert fake_ollama.bodies("/api/generate")[-1] == {"model": "embedder", "stream": False}
    p.unload()
    assert "embedder" not in fake_ollama.loaded and p.memory_bytes() == 0


def test_model_not_pulled_says_how_to_pull(fake_ollama):
    with pytest.raises(ProviderError, match=r"ollama pull llama9"):
        provider(fake_ollama.url, model="llama9").load("remote")


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (400, "invalid options", InvalidRequest),
        (500, "model requires more system memory (9 GiB) than is available", OutOfMemory),
        (400, "this model does not support embeddings", CapabilityNotSupported),
        (500, "llama runner process has terminated", ProviderError),
        (503, "server busy", Unavailable),
    ],
)
def test_ollama_errors_become_loom_errors(fake_ollama, status, message, error):
    fake_ollama.fail_next(status, message)
    with pytest.raises(error, match="ollama"):
        chat(provider(fake_ollama.url))


def test_ollama_not_running_is_unavailable():
    p = provider(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Unavailable, match="ollama serve"):
        chat(p)
    p.unload()  # an Ollama that is gone is not an error when freeing


def test_host_comes_from_model_plugin_env_then_default(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert provider("").base_url == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:9999")
    assert provider("").base_url == "http://127.0.0.1:9999"
    assert provider("", PluginOptions(host="gpu-box")).base_url == "http://gpu-box:11434"
    explicit = provider("https://ollama.example.com", PluginOptions(host="gpu-box"))
    assert explicit.base_url == "https://ollama.example.com"
    assert resolve_host("http://h:1/") == "http://h:1"
