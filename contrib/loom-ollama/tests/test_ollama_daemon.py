"""The plugin as a user meets it: installed, found by `loom serve`, called with the openai package."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from loom.sdk.testing import LoomServer


@pytest.fixture(scope="module")
def loom(fake_ollama, tmp_path_factory):
    config = f"""
    [plugins.ollama]
    host = "{fake_ollama.url}"
    timeout = 30

    [[models]]
    id = "tiny-chat"
    provider = "ollama"
    options = {{ model = "tiny" }}

    [[models]]
    id = "tiny-embed"
    provider = "ollama"
    capabilities = ["embedding"]
    options = {{ model = "embedder" }}
    """
    with LoomServer(config, tmp_path_factory.mktemp("loom-ollama")) as server:
        yield server


def test_loom_plugins_lists_it():
    out = subprocess.run(
        [sys.executable, "-m", "loom.daemon.cli", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    plugin = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}["ollama"]
    assert plugin["distribution"] == "loom-ollama" and plugin["version"] == "0.1.0"
    assert plugin["providers"][0]["capabilities"] == ["chat", "completion", "embedding"]
    assert plugin["providers"][0]["local"] is False


def test_chat_streamed_and_not(loom):
    client = loom.openai()
    reply = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=6, seed=3
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=6, seed=3, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == reply.choices[0].message.content


def test_completions_and_embeddings(loom):
    client = loom.openai()
    completion = client.completions.create(model="tiny-chat", prompt="Once upon a time", max_tokens=4)
    assert completion.choices[0].text and completion.usage.completion_tokens == 4
    embeddings = client.embeddings.create(model="tiny-embed", input=["one", "two"])
    assert len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 32


def test_upstream_model_missing_is_a_provider_error(loom, fake_ollama):
    import openai

    fake_ollama.fail_next(404, 'model "tiny" not found, try pulling it first')
    with pytest.raises(openai.APIStatusError) as caught:
        loom.openai().chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502 and "ollama pull tiny" in str(caught.value)
