"""The transformers providers, loaded by path from tiny saved models, over HTTP with real clients."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest

pytest.importorskip("torch")

from loom.sdk import CapabilityNotSupported, InvalidRequest, ProviderError
from loom.sdk.client import LoomClient
from PIL import Image


@pytest.fixture(scope="module")
def loom(torch_daemon):
    with LoomClient(torch_daemon.url, timeout=180) as client:
        yield client


def png_uri(colour=(200, 30, 30), size=(40, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def ask(client, content="Tell me a story.", **kw):
    kw.setdefault("max_tokens", 8)
    return client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": content}], **kw)


# --- chat and completions ---------------------------------------------------------------------------


def test_chat_with_template_returns_text_and_usage(torch_client):
    r = ask(torch_client, seed=1)
    choice = r.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    # The template wraps the turn in <|user|> ... <|assistant|>; a byte-level token per character.
    assert r.usage.prompt_tokens > len("Tell me a story.")
    assert 0 < r.usage.completion_tokens <= 8


def test_chat_same_seed_same_text(torch_client):
    a = ask(torch_client, seed=42, temperature=1.0)
    b = ask(torch_client, seed=42, temperature=1.0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_chat_streams_the_same_text(torch_client):
    plain = ask(torch_client, "Stream this.", seed=5, max_tokens=10)
    stream = ask(
        torch_client, "Stream this.", seed=5, max_tokens=10, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_completions_honour_max_tokens(torch_client):
    r = torch_client.completions.create(model="tiny-gpt2", prompt="Once upon a time", max_tokens=5, seed=3)
    assert isinstance(r.choices[0].text, str)
    assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens == len("Once upon a time")


def test_penalties_are_refused_not_dropped(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        ask(torch_client, presence_penalty=1.0)
    assert e.value.code == "unsupported_parameter"


# --- embeddings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-gpt2-encoder"])
def test_text_embeddings_are_unit_vectors(torch_client, model):
    r = torch_client.embeddings.create(model=model, input=["hello world", "a longer sentence to embed"])
    vectors = np.array([d.embedding for d in r.data])
    assert vectors.shape == (2, 32)  # n_embd of the tiny GPT-2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert r.usage.prompt_tokens == len("hello world") + len("a longer sentence to embed")


def test_text_model_refuses_image_embedding(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.embeddings.create(model="tiny-gpt2", input=[png_uri()])
    assert e.value.code == "capability_not_supported"


# --- translation --------------------------------------------------------------------------------------


def test_translation_returns_text_per_input(loom):
    long = " ".join(f"Sentence number {i} is here." for i in range(12))  # several chunks of 40 tokens
    r = loom.translate("tiny-nllb", ["Hello world.", long, "Line one.\n\nLine two."], "eng_Latn", "fra_Latn")
    assert r["object"] == "translation" and len(r["translations"]) == 3
    assert all(isinstance(t, str) for t in r["translations"])
    assert r["translations"][2].count("\n") == 2  # lines and blank lines survive


def test_translation_takes_iso_codes(loom):
    r = loom.translate("tiny-nllb", "Good morning.", "en", "de")
    assert r["source"] == "en" and len(r["translations"]) == 1


def test_translation_unknown_language_is_400(loom):
    with pytest.raises(InvalidRequest) as e:
        loom.translate("tiny-nllb", "Hello.", "en", "klingon")
    assert e.value.param == "target" and "klingon" in e.value.message


# --- vision -------------------------------------------------------------------------------------------


def test_describe_returns_text(loom):
    r = loom.describe("tiny-blip", png_uri())
    assert r["object"] == "vision.description"
    assert isinstance(r["description"], str) and r["description"].strip()
    again = loom.describe("tiny-blip", png_uri())
    assert again["description"] == r["description"]  # descriptions are greedy


def test_describe_with_prompt_continues_it(loom):
    r = loom.describe("tiny-blip", png_uri(), prompt="a photo of", detail="brief")
    assert r["description"].startswith("a photo of")


def test_describe_undecodable_image_is_400(loom):
    garbage = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    with pytest.raises(InvalidRequest) as e:
        loom.describe("tiny-blip", garbage)
    assert e.value.param == "image"


def test_captioner_cannot_score(loom):
    with pytest.raises(CapabilityNotSupported):
        loom.score("tiny-blip", png_uri(), "a red square")


def test_chat_with_an_image_on_the_captioner(torch_client):
    r = torch_client.chat.completions.create(
        model="tiny-blip",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": png_uri()}},
                ],
            }
        ],
        max_tokens=6,
    )
    assert isinstance(r.choices[0].message.content, str)


def test_image_text_to_text_model_describes_and_chats(loom, torch_client):
    r = loom.describe("tiny-llava", png_uri(), detail="brief", prompt="What colour is this?")
    assert isinstance(r["description"], str) and r["description"].strip()
    chat = torch_client.chat.completions.create(
        model="tiny-llava",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": png_uri()}},
                    {"type": "text", "text": "What is in this picture?"},
                ],
            }
        ],
        max_tokens=5,
        seed=2,
    )
    assert chat.choices[0].message.content and 0 < chat.usage.completion_tokens <= 5
    # 16 image patch tokens are part of the prompt.
    assert chat.usage.prompt_tokens > 16 + len("What is in this picture?")


# --- capabilities and sources -------------------------------------------------------------------------


def test_model_asked_for_a_capability_it_lacks_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.chat.completions.create(model="tiny-nllb", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "capability_not_supported"


def test_missing_weights_offline_name_the_model_and_the_cache(loom, torch_daemon):
    with pytest.raises(ProviderError) as e:
        loom.request("POST", "/v1/embeddings", {"model": "not-downloaded", "input": "x"})
    message = e.value.message
    assert "not-downloaded" in message and "loom-tests/no-such-model" in message
    assert str(torch_daemon.data_dir.parent / "hf-home" / "hub") in message and "HF_HUB_OFFLINE" in message
