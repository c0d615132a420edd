"""`loom serve` on the shipped config answers real chat with the embedded SmolLM2."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import ROOT, Daemon, openai_client, write_config


@pytest.fixture(scope="module")
def client(default_daemon):
    return openai_client(default_daemon, timeout=120)


def ask(client, content, **kw):
    return client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": content}], **kw)


def test_default_serves_real_chat(client):
    r = ask(client, "What is the capital of France?", max_tokens=24, seed=1, temperature=0)
    text = r.choices[0].message.content
    assert isinstance(text, str) and len(text.strip()) > 0
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24


def test_default_alias_and_seed_determinism(client):
    a = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Tell me a word."}],
        seed=42,
        temperature=0.9,
        max_tokens=16,
    )
    b = ask(client, "Tell me a word.", seed=42, temperature=0.9, max_tokens=16)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_default_streams(client):
    stream = ask(client, "Count to five.", stream=True, max_tokens=20, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage.completion_tokens > 0


def test_default_stop_and_max_tokens(client):
    r = ask(client, "Write a long story about the sea.", max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens <= 5
    # A stop string: a word from the middle of the greedy answer cuts the same answer before it.
    full = ask(client, "Write a long story about the sea.", max_tokens=40, temperature=0, seed=1)
    text = full.choices[0].message.content
    words = text.split()
    word = words[len(words) // 2]
    cut = ask(client, "Write a long story about the sea.", max_tokens=40, temperature=0, seed=1, stop=[word])
    answer = cut.choices[0].message.content
    assert cut.choices[0].finish_reason == "stop" and word not in answer
    assert text.startswith(answer) and len(answer) < text.index(word) + 1
    assert cut.usage.completion_tokens < full.usage.completion_tokens


def test_default_json_schema_is_grammar_constrained(client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = ask(
        client,
        "Give me a person as JSON.",
        max_tokens=60,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    value = json.loads(r.choices[0].message.content)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_default_json_object(client):
    r = ask(
        client,
        "Reply with a JSON object with one key, ok, set to true.",
        max_tokens=200,
        seed=3,
        response_format={"type": "json_object"},
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_default_n_choices(client):
    r = ask(client, "Say hello.", n=2, max_tokens=8, seed=11, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1]


def test_default_completions_and_embeddings(client):
    c = client.completions.create(model="smollm2-135m", prompt="The sky is", max_tokens=6, seed=1)
    assert c.choices[0].text
    e = client.embeddings.create(model="smollm2-135m", input=["hello", "world"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 100


def test_default_mock_models_cover_other_capabilities(client):
    models = {m.id: m.model_dump() for m in client.models.list().data}
    for mid, cap in [
        ("mock-image", "image"),
        ("mock-vision", "vision"),
        ("mock-translate", "translation"),
        ("mock-rerank", "rerank"),
    ]:
        assert cap in models[mid]["capabilities"]
    img = client.images.generate(model="mock-image", prompt="a lighthouse", size="64x64")
    assert img.data[0].b64_json
    # Rerank with no model: the shipped [routes] rerank answers.
    ranked = client.post(
        "/rerank", body={"query": "calm sea", "documents": ["stocks", "the sea is calm"]}, cast_to=object
    )
    assert ranked["model"] == "mock-rerank" and [r["index"] for r in ranked["results"]] == [1, 0]


def test_default_empty_messages_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2-135m", messages=[], max_tokens=1)
    assert e.value.body["param"] == "messages"


def test_default_provider_failure_is_502_and_recovers(tmp_path):
    """The shipped config plus a model whose provider fails every call: its failure is a 502 in
    OpenAI's shape, and SmolLM2 on the same daemon answers right after (and again after a
    second failure, so the failure left nothing behind)."""
    config = (ROOT / "plugins.toml").read_text() + (
        '\n[[models]]\nid = "fails"\nprovider = "mock"\ncapabilities = ["chat"]\n'
        'options = { fail_rate = 1.0, fail_message = "the provider fell over" }\n'
    )
    daemon = Daemon(write_config(tmp_path / "loom.toml", config), tmp_path / "data").start()
    try:
        client = openai_client(daemon, timeout=120)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as e:
                client.chat.completions.create(model="fails", messages=[{"role": "user", "content": "hi"}])
            assert e.value.status_code == 502 and "fell over" in e.value.message
            assert e.value.body["code"] == "provider_error"
            r = ask(client, "Say hello.", max_tokens=8, seed=1)
            assert r.choices[0].message.content.strip() and r.model == "smollm2-135m"
    finally:
        daemon.stop()
