"""Every answer of the OpenAI-compatible routes, success and error, streamed or not, fits OpenAI's
own published schema for it (pinned in ``tests/openai-openapi.md``, read by ``tests/openai_schema``)."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.openai_schema import require_document, validate, validate_event

HELLO = [{"role": "user", "content": "Hello there"}]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 90)).save(buf, "PNG")
    return buf.getvalue()


def sse(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


@pytest.fixture(scope="module")
def api(mock_daemon):
    require_document()
    with httpx.Client(base_url=f"{mock_daemon.url}/v1", timeout=60) as client:
        yield client


def test_plain_answers_fit_openais_schemas(api):
    checks = [
        (
            api.post("/chat/completions", json={"model": "mock-chat", "messages": HELLO, "n": 2}),
            "CreateChatCompletionResponse",
        ),
        (
            api.post("/completions", json={"model": "mock-chat", "prompt": ["a", "b"], "echo": True}),
            "CreateCompletionResponse",
        ),
        (api.post("/embeddings", json={"model": "mock-chat", "input": ["a", "b"]}), "CreateEmbeddingResponse"),
        (
            api.post("/images/generations", json={"model": "mock-image", "prompt": "x", "size": "64x64"}),
            "ImagesResponse",
        ),
        (
            api.post("/images/generations", json={"model": "mock-image", "prompt": "x", "response_format": "url"}),
            "ImagesResponse",
        ),
        (
            api.post(
                "/images/edits",
                files={"image": ("a.png", png(), "image/png")},
                data={"model": "mock-image", "prompt": "x"},
            ),
            "ImagesResponse",
        ),
        (
            api.post(
                "/images/variations", files={"image": ("a.png", png(), "image/png")}, data={"model": "mock-image"}
            ),
            "ImagesResponse",
        ),
        (api.get("/models"), "ListModelsResponse"),
        (api.get("/models/mock-chat"), "Model"),
        (api.post("/responses", json={"model": "mock-chat", "input": "hi"}), "Response"),
    ]
    for response, schema in checks:
        assert response.status_code == 200, response.text
        validate(response.json(), schema)
    # base64 embeddings: OpenAI's schema knows only the float form (its API answers base64 when
    # asked, and its client decodes it); the decoded floats are the float answer.
    floats = api.post("/embeddings", json={"model": "mock-chat", "input": "a"}).json()
    packed = api.post("/embeddings", json={"model": "mock-chat", "input": "a", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype=np.float32)
    assert np.allclose(decoded, floats["data"][0]["embedding"], atol=1e-6)
    validate({**packed, "data": floats["data"]}, "CreateEmbeddingResponse")
    stored = checks[-1][0].json()["id"]
    validate(api.get(f"/responses/{stored}").json(), "Response")
    deleted = api.delete(f"/responses/{stored}").json()
    assert deleted == {"id": stored, "object": "response", "deleted": True}  # the body of OpenAI's example


def test_streams_fit_openais_schemas(api):
    chat = api.post(
        "/chat/completions",
        json={"model": "mock-chat", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = sse(chat)
    assert len(chunks) > 2 and chat.text.rstrip().endswith("data: [DONE]")
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    completion = api.post("/completions", json={"model": "mock-chat", "prompt": "Once", "stream": True})
    pieces = sse(completion)
    assert pieces[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    for chunk in pieces:
        # OpenAI streams its completions against the same schema, with finish_reason null until
        # the last chunk (the schema, written for the whole answer, has no null there).
        if chunk["choices"][0]["finish_reason"] is None:
            chunk["choices"][0]["finish_reason"] = "stop"
        validate(chunk, "CreateCompletionResponse")
    events = sse(api.post("/responses", json={"model": "mock-chat", "input": "hi", "stream": True}))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    for event in events:
        validate_event(event)


@pytest.mark.parametrize(
    "path, body",
    [
        ("/chat/completions", {"model": "nope", "messages": HELLO}),
        ("/chat/completions", {"model": "mock-chat", "messages": HELLO, "temperature": 9}),
        ("/completions", {"model": "mock-chat"}),
        ("/embeddings", {"model": "mock-image", "input": "x"}),
        ("/images/generations", {"model": "mock-broken", "prompt": "x"}),
        ("/responses", {"model": "mock-chat", "input": "hi", "previous_response_id": "resp_nope"}),
    ],
)
def test_errors_fit_openais_error_schema(api, path, body):
    r = api.post(path, json=body)
    assert r.status_code >= 400
    validate(r.json(), "ErrorResponse")


def test_a_stream_that_fails_before_its_first_token_keeps_its_status(api):
    r = api.post("/chat/completions", json={"model": "mock-broken", "messages": HELLO, "stream": True})
    # mock-broken fails before its first token: the status says so, in OpenAI's shape.
    assert r.status_code == 502
    validate(r.json(), "ErrorResponse")
