"""Tool calls, logprobs, the parameter policy and the Responses API over HTTP, on the mock models,
with every answer checked against OpenAI's published schemas (tests/openai_schema.py): the tests that
validate take the ``openai_document`` fixture, the others run without the document."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.openai_schema import validate, validate_event

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Forecast", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(mock_daemon):
    return openai_client(mock_daemon)


def post(daemon: Daemon, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{daemon.url}/v1{path}", json=body, timeout=30)


def sse(daemon: Daemon, path: str, body: dict) -> list[dict]:
    """The JSON events of a stream (``[DONE]`` left out)."""
    events = []
    with httpx.stream("POST", f"{daemon.url}/v1{path}", json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


# --- Chat Completions: tool calls -------------------------------------------------------------------


def test_a_forced_call_validates_and_fits_openais_schema(openai_document, mock_daemon):
    r = post(
        mock_daemon,
        "/chat/completions",
        {
            "model": "mock-chat",
            "messages": ASK,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "CreateChatCompletionResponse")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER)


def test_streamed_calls_come_in_openais_chunk_shape(openai_document, mock_daemon, client):
    chunks = sse(
        mock_daemon,
        "/chat/completions",
        {
            "model": "mock-chat",
            "messages": ASK,
            "tools": TOOLS,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    deltas = [d for c in chunks for ch in c["choices"] for d in ch["delta"].get("tool_calls", [])]
    firsts = {}
    for d in deltas:
        if d["index"] not in firsts:
            assert d["id"] and d["type"] == "function" and d["function"]["name"], d
            firsts[d["index"]] = d
        else:
            assert "id" not in d and "name" not in d["function"] and d["function"]["arguments"], d
    # Two tools and parallel calls allowed: the mock calls both, each with its arguments in pieces.
    assert sorted(firsts) == [0, 1]
    assert len(deltas) > 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    # The openai package's stream helper joins the pieces into the same calls as a plain answer.
    with client.chat.completions.stream(model="mock-chat", messages=ASK, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    plain = client.chat.completions.create(model="mock-chat", messages=ASK, tools=TOOLS)

    def calls(message):
        return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls]

    assert calls(final.choices[0].message) == calls(plain.choices[0].message)


def test_parallel_tool_calls_false_makes_one_call(client):
    r = client.chat.completions.create(model="mock-chat", messages=ASK, tools=TOOLS, parallel_tool_calls=False)
    assert len(r.choices[0].message.tool_calls) == 1


def test_tool_choice_none_answers_in_text(client):
    r = client.chat.completions.create(model="mock-chat", messages=ASK, tools=TOOLS, tool_choice="none")
    assert r.choices[0].message.content and not r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason in ("stop", "length")


def test_a_conversation_with_tool_results_is_answered(client):
    first = client.chat.completions.create(model="mock-chat", messages=ASK, tools=TOOLS, tool_choice="required")
    message = first.choices[0].message
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in message.tool_calls]},
        *[{"role": "tool", "tool_call_id": c.id, "content": "sunny, 24 degrees"} for c in message.tool_calls],
    ]
    second = client.chat.completions.create(model="mock-chat", messages=history, tools=TOOLS)
    assert "sunny" in second.choices[0].message.content and second.choices[0].finish_reason == "stop"


# --- the parameter policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"metadata": {"user": "u1"}, "store": True, "service_tier": "auto", "user": "u1"},
        {"prompt_cache_key": "k", "prompt_cache_retention": "24h", "safety_identifier": "s"},
        {"logprobs": False, "logit_bias": {}, "modalities": ["text"], "presence_penalty": 0},
    ],
)
def test_bookkeeping_and_parameters_that_ask_nothing_are_accepted(mock_daemon, params):
    r = post(mock_daemon, "/chat/completions", {"model": "mock-chat", "messages": ASK, **params})
    assert r.status_code == 200, r.text
    assert "x-loom-ignored" not in r.headers


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"top_k": 20}, "top_k"),
        ({"min_p": 0.1}, "min_p"),
        ({"repeat_penalty": 1.3}, "repeat_penalty"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_what_the_model_cannot_honour_is_refused_by_name(mock_daemon, params, name):
    r = post(mock_daemon, "/chat/completions", {"model": "mock-chat", "messages": ASK, **params})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == name
    assert name in error["message"] and "mock-chat" in error["message"] and "lenient" in error["message"]


# --- bad input ------------------------------------------------------------------------------------------


def _tool(name="f", parameters=None):
    return {"type": "function", "function": {"name": name, **({"parameters": parameters} if parameters else {})}}


BAD_CHAT = [
    ({"tools": [_tool(parameters={"type": "string"})]}, "tools[0].function.parameters"),
    ({"tools": [_tool(parameters={"type": "object", "properties": []})]}, "tools[0].function.parameters.properties"),
    ({"tools": [_tool(), _tool()]}, "tools[1].function.name"),
    ({"tools": [_tool(name="has space")]}, "tools[0].function.name"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [_tool()], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice.function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"tools": [_tool()], "tool_choice": "sometimes"}, "tool_choice"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"top_logprobs": 99, "logprobs": True}, "top_logprobs"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"messages": [*ASK, {"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"messages": [*ASK, {"role": "assistant", "content": None}]}, "messages[1].content"),
    ({"messages": [*ASK, {"role": "tool", "content": "x"}]}, "messages[1]"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0].content"),
    ({"metadata": {"k": 1}}, "metadata"),
]


@pytest.mark.parametrize(("extra", "param"), BAD_CHAT, ids=[p for _, p in BAD_CHAT])
def test_bad_chat_input_is_a_400_naming_the_field(openai_document, mock_daemon, extra, param):
    r = post(mock_daemon, "/chat/completions", {"model": "mock-chat", "messages": ASK, **extra})
    assert r.status_code == 400, r.text
    validate(r.json(), "ErrorResponse")
    got = r.json()["error"]["param"] or ""
    assert got == param or got.startswith(param), (got, r.json())


# --- the other endpoints fit OpenAI's schemas ---------------------------------------------------------------


def test_plain_chat_completions_embeddings_images_and_models_fit_openais_schemas(openai_document, mock_daemon):
    chat = post(mock_daemon, "/chat/completions", {"model": "mock-chat", "messages": ASK, "n": 2, "max_tokens": 5})
    validate(chat.json(), "CreateChatCompletionResponse")
    for chunk in sse(mock_daemon, "/chat/completions", {"model": "mock-chat", "messages": ASK, "stream": True}):
        validate(chunk, "CreateChatCompletionStreamResponse")
    completion = post(mock_daemon, "/completions", {"model": "mock-chat", "prompt": "Once", "max_tokens": 4})
    validate(completion.json(), "CreateCompletionResponse")
    body = post(mock_daemon, "/embeddings", {"model": "mock-chat", "input": ["a", "b"], "encoding_format": "float"})
    validate(body.json(), "CreateEmbeddingResponse")
    # base64: OpenAI itself answers a string there, which its published schema does not describe.
    b64 = post(mock_daemon, "/embeddings", {"model": "mock-chat", "input": "a", "encoding_format": "base64"}).json()
    assert isinstance(b64["data"][0]["embedding"], str)
    for fmt in ("b64_json", "url"):
        images = post(
            mock_daemon,
            "/images/generations",
            {"model": "mock-image", "prompt": "a fox", "size": "32x32", "response_format": fmt},
        )
        validate(images.json(), "ImagesResponse")
    listed = httpx.get(f"{mock_daemon.url}/v1/models").json()
    validate(listed, "ListModelsResponse")
    validate(httpx.get(f"{mock_daemon.url}/v1/models/mock-chat").json(), "Model")


# --- the Responses API ----------------------------------------------------------------------------------------

FLAT_TOOLS = [
    {"type": "function", "name": t["function"]["name"], **{k: v for k, v in t["function"].items() if k != "name"}}
    for t in TOOLS
]


def test_responses_text_get_and_delete(openai_document, mock_daemon, client):
    r = client.responses.create(model="mock-chat", input="Say hello", instructions="Be brief.", metadata={"k": "v"})
    raw = httpx.get(f"{mock_daemon.url}/v1/responses/{r.id}").json()
    validate(raw, "Response")
    assert r.status == "completed" and r.output_text and r.instructions == "Be brief." and r.metadata == {"k": "v"}
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert client.responses.retrieve(r.id).output_text == r.output_text
    deleted = client.responses.delete(r.id) if hasattr(client.responses, "delete") else None
    assert deleted is None or getattr(deleted, "deleted", True)
    gone = httpx.get(f"{mock_daemon.url}/v1/responses/{r.id}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert httpx.delete(f"{mock_daemon.url}/v1/responses/{r.id}").status_code == 404


def test_responses_function_call_round_trip_with_previous_response_id(openai_document, client):
    first = client.responses.create(
        model="mock-chat", input="Weather in Paris?", tools=FLAT_TOOLS, tool_choice="required"
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name in ("get_weather", "get_time")
    if calls[0].name == "get_weather":
        jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
    second = client.responses.create(
        model="mock-chat",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": c.call_id, "output": "sunny"} for c in calls],
        tools=FLAT_TOOLS,
    )
    assert "sunny" in second.output_text and second.previous_response_id == first.id
    # The same conversation sent whole (as agent frameworks do without previous_response_id).
    again = client.responses.create(
        model="mock-chat",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[c.model_dump(exclude_none=True) for c in calls],
            *[{"type": "function_call_output", "call_id": c.call_id, "output": "sunny"} for c in calls],
        ],
        tools=FLAT_TOOLS,
        store=False,
    )
    assert "sunny" in again.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(again.id)


def test_input_items_list_what_a_response_was_asked_with(openai_document, mock_daemon, client):
    calls = [{"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    sent = [
        {"role": "user", "content": "Weather in Paris?", "id": "msg_mine"},
        {"role": "assistant", "content": "Let me look."},
        *calls,
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
    ]
    r = client.responses.create(model="mock-chat", input=sent, tools=FLAT_TOOLS)
    url = f"{mock_daemon.url}/v1/responses/{r.id}/input_items"
    listed = httpx.get(url, params={"order": "asc"}).json()
    validate(listed, "ResponseItemList")
    items = listed["data"]
    assert [i["type"] for i in items] == ["message", "message", "function_call", "function_call_output", "message"]
    assert items[0]["id"] == "msg_mine" and items[0]["content"] == [{"type": "input_text", "text": "Weather in Paris?"}]
    assert items[1]["role"] == "assistant" and items[1]["content"][0]["type"] == "output_text"
    assert items[2]["call_id"] == "call_1" and items[3]["output"] == "sunny"
    assert len({i["id"] for i in items}) == 5 and all(i["status"] == "completed" for i in items)
    # The openai client's pager: newest first by default, a page at a time.
    assert [i.id for i in client.responses.input_items.list(r.id)] == [i["id"] for i in reversed(items)]
    first = httpx.get(url, params={"limit": 2, "order": "asc"}).json()
    assert first["has_more"] and [i["id"] for i in first["data"]] == [i["id"] for i in items[:2]]
    rest = httpx.get(url, params={"limit": 10, "order": "asc", "after": first["last_id"]}).json()
    assert not rest["has_more"] and [i["id"] for i in rest["data"]] == [i["id"] for i in items[2:]]
    assert httpx.get(url, params={"limit": 0}).json()["error"]["param"] == "limit"
    unknown = httpx.get(url, params={"after": "msg_nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "after"
    assert httpx.get(f"{mock_daemon.url}/v1/responses/resp_nope/input_items").status_code == 404


def test_responses_stream_follows_openais_event_sequence(openai_document, mock_daemon, client):
    events = sse(
        mock_daemon, "/responses", {"model": "mock-chat", "input": "Weather?", "tools": FLAT_TOOLS, "stream": True}
    )
    for event in events:
        validate_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.output_item.added") == types.count("response.output_item.done") == 2
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    final = events[-1]["response"]
    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert final["output"] == done_items
    # Text: the message events, and the SDK's stream helper gives the same text as a plain answer.
    text_events = sse(
        mock_daemon, "/responses", {"model": "mock-chat", "input": "Hi", "stream": True, "max_output_tokens": 6}
    )
    for event in text_events:
        validate_event(event)
    kinds = [e["type"] for e in text_events]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.incomplete"
    assert text_events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    with client.responses.stream(model="mock-chat", input="Hi there") as stream:
        streamed = stream.get_final_response()
    assert streamed.output_text == client.responses.create(model="mock-chat", input="Hi there").output_text
    assert client.responses.retrieve(streamed.id).output_text == streamed.output_text


def test_responses_json_schema_format_and_parse(client):
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    r = client.responses.parse(model="mock-chat", input="Paris", text_format=City)
    assert isinstance(r.output_parsed, City)


BAD_RESPONSES = [
    ({"input": "x", "temperature_k": 1}, "temperature_k"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
        "input[0].content[0].file_id",
    ),
    (
        {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "data:,"}]}]},
        "input[0].content[0].type",
    ),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    (
        {"input": "x", "tools": FLAT_TOOLS, "tool_choice": {"type": "function", "name": "nope"}},
        "tool_choice.function.name",
    ),
    ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
    ({"input": "x", "truncation": "auto"}, "truncation"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "max_tool_calls": 2}, "max_tool_calls"),
    ({"input": "x", "top_logprobs": 3}, "include"),
    ({"input": "x", "reasoning": {"effort": "low"}}, "reasoning.effort"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": []}, "input"),
]


@pytest.mark.parametrize(("extra", "param"), BAD_RESPONSES, ids=[p for _, p in BAD_RESPONSES])
def test_bad_responses_input_is_a_400_naming_the_field(mock_daemon, extra, param):
    r = post(mock_daemon, "/responses", {"model": "mock-chat", **extra})
    assert r.status_code == 400, r.text
    got = r.json()["error"]["param"] or ""
    assert got == param or got.startswith(param), (got, r.json())


def test_an_unknown_previous_response_is_404(mock_daemon):
    r = post(mock_daemon, "/responses", {"model": "mock-chat", "input": "x", "previous_response_id": "resp_nope"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"


# --- compat = "lenient", and stored responses across a restart ------------------------------------------

LENIENT = """
[daemon]
host = "127.0.0.1"
compat = "lenient"

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]
"""


@pytest.fixture(scope="module")
def lenient(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lenient")
    d = Daemon(write_config(tmp / "loom.toml", LENIENT), tmp / "data").start()
    yield d
    d.stop()


def test_lenient_compat_leaves_out_and_names_what_it_cannot_honour(lenient):
    body = {
        "model": "mock-chat",
        "messages": ASK,
        "seed": 3,
        "top_k": 5,
        "logprobs": True,
        "top_logprobs": 2,
        "verbosity": "low",
    }
    r = post(lenient, "/chat/completions", body)
    assert r.status_code == 200, r.text
    assert r.headers["x-loom-ignored"] == "logprobs, top_logprobs, top_k, verbosity"
    assert r.json()["choices"][0]["logprobs"] is None
    plain = post(lenient, "/chat/completions", {"model": "mock-chat", "messages": ASK, "seed": 3})
    assert "x-loom-ignored" not in plain.headers
    assert plain.json()["choices"][0]["message"] == r.json()["choices"][0]["message"]
    streamed = httpx.post(f"{lenient.url}/v1/chat/completions", json={**body, "stream": True})
    assert streamed.headers["x-loom-ignored"] == "logprobs, top_logprobs, top_k, verbosity"
    # The Responses API names parameters its own way.
    resp = post(
        lenient,
        "/responses",
        {"model": "mock-chat", "input": "x", "truncation": "auto", "reasoning": {"effort": "low"}},
    )
    assert resp.status_code == 200 and resp.headers["x-loom-ignored"] == "truncation, reasoning.effort"


def test_previous_response_id_works_across_a_restart(lenient):
    client = openai_client(lenient)
    first = client.responses.create(model="mock-chat", input="Remember the word lighthouse.")
    lenient.restart()
    client = openai_client(lenient)
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(model="mock-chat", input="Which word?", previous_response_id=first.id)
    assert second.status == "completed" and second.previous_response_id == first.id
