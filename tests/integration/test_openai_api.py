"""The OpenAI-compatible API through the official `openai` package against a live daemon."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import openai_client


@pytest.fixture(scope="module")
def client(mock_daemon):
    return openai_client(mock_daemon)


def test_models_list_has_capabilities_and_provider(client):
    models = {m.id: m for m in client.models.list().data}
    assert {"mock-chat", "mock-image", "mock-vision", "mock-translate"} <= set(models)
    image = models["mock-image"].model_dump()
    assert image["capabilities"] == ["image"] and image["provider"] == "mock"
    assert client.models.retrieve("mock-alias").id == "mock-chat"


def test_unknown_model_is_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_chat_plain_and_usage(client):
    r = client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "hello there"}], seed=7, max_tokens=12
    )
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "hello there"}], seed=7, max_tokens=12
    )
    assert again.choices[0].message.content == r.choices[0].message.content


def test_chat_n_choices_are_real(client):
    r = client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "pick"}], n=3, seed=1, max_tokens=8
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=10,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_chat_with_image_routes_to_vision_model(client, mock_daemon):
    png = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(png, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    raw = client.chat.completions.with_raw_response.create(
        model="mock-chat",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": uri}},
                ],
            }
        ],
    )
    assert raw.headers["x-loom-model"] == "mock-vision"
    assert raw.parse().choices[0].message.content


def test_completions(client):
    r = client.completions.create(model="mock-chat", prompt=["one", "two"], max_tokens=5, n=2, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    echo = client.completions.create(model="mock-chat", prompt="Say", max_tokens=3, echo=True)
    assert echo.choices[0].text.startswith("Say")
    streamed = list(client.completions.create(model="mock-chat", prompt="go", max_tokens=4, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_embeddings_float_and_base64(client):
    # The openai package asks for base64 by default and decodes it.
    r = client.embeddings.create(model="mock-chat", input=["a cat", "a dog"])
    vecs = np.array([d.embedding for d in r.data])
    assert vecs.shape[0] == 2 and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-4)
    f = client.embeddings.create(model="mock-chat", input="a cat", encoding_format="float")
    assert np.allclose(f.data[0].embedding, vecs[0], atol=1e-6)


def test_embeddings_dimensions_mismatch_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="mock-chat", input="x", dimensions=3)
    assert e.value.body["param"] == "dimensions"


def test_images_b64_and_url(client, mock_daemon):
    r = client.images.generate(model="mock-image", prompt="a red fox", size="64x48", n=2, extra_body={"seed": 5})
    imgs = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in r.data]
    assert [i.size for i in imgs] == [(64, 48), (64, 48)]
    same = client.images.generate(model="mock-image", prompt="a red fox", size="64x48", extra_body={"seed": 5})
    assert same.data[0].b64_json == r.data[0].b64_json
    u = client.images.generate(model="mock-image", prompt="a red fox", size="32x32", response_format="url")
    fetched = httpx.get(u.data[0].url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (32, 32)


def test_capability_the_model_lacks_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="mock-chat", prompt="x")
    assert e.value.code == "capability_not_supported"


def test_unsupported_parameter_is_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "x"}], logit_bias={"1": 2}
        )
    assert e.value.code == "unsupported_parameter" and e.value.body["param"] == "logit_bias"
    assert "logit_bias" in e.value.message


def test_validation_error_names_field_path(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-chat", messages=[{"role": "robot", "content": "x"}])
    assert e.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert e.value.body["param"] == "temperature"


def test_malformed_json_is_400(mock_daemon):
    r = httpx.post(
        f"{mock_daemon.url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_body_over_limit_is_413(mock_daemon):
    big = b'{"model": "mock-chat", "messages": [{"role": "user", "content": "' + b"x" * 2_000_000 + b'"}]}'
    r = httpx.post(f"{mock_daemon.url}/v1/chat/completions", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_unknown_route_is_openai_shaped_404(mock_daemon):
    r = httpx.get(f"{mock_daemon.url}/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_health_and_docs(mock_daemon):
    assert httpx.get(f"{mock_daemon.url}/health").json()["status"] == "ok"
    doc = httpx.get(f"{mock_daemon.url}/docs/openapi.json").json()
    assert doc["info"]["title"] == "Loom"
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert chat["schema"]["$ref"] == "#/components/schemas/ChatCompletionRequest"
    schema = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert "messages" in schema["properties"] and "model" in schema["required"]
    assert {"UserMessage", "AssistantMessage", "ToolMessage", "CreateResponseRequest"} <= set(
        doc["components"]["schemas"]
    )


def test_file_route_cannot_leave_data_dir(mock_daemon):
    # The daemon's own log sits in the data dir but outside the public folders.
    own_log = mock_daemon.log.name
    assert (mock_daemon.data_dir / own_log).exists()
    for path in ["../loom.toml", "..%2F..%2Floom.toml", "images/../../loom.toml", own_log, f"images/../{own_log}"]:
        r = httpx.get(f"{mock_daemon.url}/v1/files/{path}")
        assert r.status_code == 404, path


def test_provider_failure_is_502_and_daemon_keeps_serving(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="mock-broken", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502 and "caught fire" in e.value.message
    with pytest.raises(openai.InternalServerError):
        client.images.generate(model="mock-broken", prompt="x")
    assert (
        client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "still there?"}])
        .choices[0]
        .message.content
    )


def test_bad_image_in_describe_is_400(mock_daemon):
    r = httpx.post(
        f"{mock_daemon.url}/v1/vision/describe",
        json={"model": "mock-vision", "image": "data:image/png;base64,aGVsbG8="},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"


def test_translation_and_vision_routes_through_sdk_client(mock_daemon):
    from loom.sdk.client import LoomClient
    from loom.sdk.errors import InvalidRequest

    png = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 90, 200)).save(png, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    with LoomClient(mock_daemon.url) as loom:
        t = loom.translate("mock-translate", ["hello world"], "eng_Latn", "fra_Latn")
        assert len(t["translations"]) == 1 and t["translations"][0] != "hello world"
        d = loom.describe("mock-vision", uri, detail="brief")
        assert d["description"]
        s = loom.score("mock-vision", uri, "a blue square", alpha=0.5)
        assert s["combined"] == pytest.approx(0.5 * 100 * s["clip"] + 0.5 * 10 * s["aesthetic"])
        with pytest.raises(InvalidRequest) as e:
            loom.translate("mock-translate", "hi", "xx_Nope", "fra_Latn")
        assert e.value.param == "source"
