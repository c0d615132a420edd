"""Anthropic's Messages API on a live daemon, spoken to by the real ``anthropic`` package.

Chat runs on the real SmolLM2 GGUF (the shipped plugins.toml), images on its mock vision model.
Every answer and every stream event is checked against the package's own pydantic types (strict,
and with no field they do not know), not against shapes written here.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import anthropic
import httpx
import jsonschema
import pydantic
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from PIL import Image

from tests.conftest import MOCK_CONFIG, Daemon, write_config

MODEL = "smollm2-135m"
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
#: Greedy sampling, so a stream and a plain answer agree (the package's own ``temperature``
#: keyword is gone from recent releases; the API still takes it).
GREEDY = {"temperature": 0}
EVENTS: pydantic.TypeAdapter = pydantic.TypeAdapter(RawMessageStreamEvent)


def strict(model: Any) -> Any:
    """``model`` with no field its type does not declare, at any depth (extra fields would be a
    misspelt or invented name: the package keeps them instead of failing)."""
    if isinstance(model, pydantic.BaseModel):
        assert not model.model_extra, f"{type(model).__name__} has fields it does not declare: {model.model_extra}"
        for value in model.__dict__.values():
            strict(value)
    elif isinstance(model, (list, tuple)):
        for value in model:
            strict(value)
    return model


def valid_message(data: dict) -> Message:
    return strict(Message.model_validate(data, strict=True))


def client(daemon: Daemon, key: str = "none", **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=daemon.url, api_key=key, max_retries=0, **kw)


def raw_events(daemon: Daemon, body: dict) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a streamed answer, read off the wire."""
    events = []
    with httpx.stream("POST", f"{daemon.url}/v1/messages", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def png(color=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buf, "PNG")
    return buf.getvalue()


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- create and stream ---------------------------------------------------------------------------


def test_create_answers_a_message_of_the_published_shape(default_daemon):
    c = client(default_daemon)
    raw = c.messages.with_raw_response.create(
        model=MODEL, max_tokens=24, extra_body=GREEDY, messages=ask("Name three colours.")
    )
    data = raw.http_response.json()
    message = valid_message(data)
    assert raw.headers["x-loom-model"] == MODEL
    assert message.id.startswith("msg_") and message.model == MODEL and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.stop_sequence is None
    usage = message.usage
    assert usage.input_tokens + usage.cache_read_input_tokens > 5 and 0 < usage.output_tokens <= 24
    assert usage.cache_creation_input_tokens == 0
    # Claude-style: the same call through the package's parsed answer.
    again = c.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=ask("Name three colours."))
    assert again.content[0].text == message.content[0].text


def test_max_tokens_cuts_with_stop_reason_max_tokens(default_daemon):
    message = client(default_daemon).messages.create(
        model=MODEL, max_tokens=3, extra_body=GREEDY, messages=ask("Write a long story about a dragon.")
    )
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_stream_follows_anthropics_event_sequence(default_daemon):
    body = {"model": MODEL, "max_tokens": 16, "messages": ask("Say hello.")}
    events = raw_events(default_daemon, {**body, **GREEDY})
    names = [name for name, _ in events]
    for name, data in events:
        assert data["type"] == name
        if name != "ping":
            strict(EVENTS.validate_python(data, strict=True))
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[1][1]["content_block"] == {"type": "text", "text": "", "citations": None}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert delta["usage"]["output_tokens"] == len(names) - 6  # one token per delta from llama.cpp here
    assert delta["usage"]["input_tokens"] + delta["usage"]["cache_read_input_tokens"] > 3
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    plain = client(default_daemon).messages.create(**body, extra_body=GREEDY)
    assert plain.content[0].text == text


def test_message_stream_accumulates_the_same_message(default_daemon):
    c = client(default_daemon)
    kw = {"model": MODEL, "max_tokens": 20, "extra_body": GREEDY, "messages": ask("What is the sun?")}
    with c.messages.stream(**kw) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    strict(final)
    plain = c.messages.create(**kw)
    assert "".join(pieces) == final.content[0].text == plain.content[0].text
    assert final.stop_reason == plain.stop_reason
    assert final.usage.output_tokens == plain.usage.output_tokens
    # input_tokens arrive with message_delta (they are known at the end), and the accumulator keeps them.
    total = final.usage.input_tokens + final.usage.cache_read_input_tokens
    assert total == plain.usage.input_tokens + plain.usage.cache_read_input_tokens > 3


def test_stop_sequences_end_with_the_matched_string(default_daemon):
    c = client(default_daemon)
    kw = {"model": MODEL, "max_tokens": 30, "extra_body": GREEDY, "messages": ask("Describe the sea in a sentence.")}
    free = c.messages.create(**kw).content[0].text
    words = free.split()
    assert len(words) >= 4, free
    stop = words[3]
    cut = c.messages.create(**kw, stop_sequences=["no such words here", stop])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.content[0].text == free[: free.index(stop)]
    with c.messages.stream(**kw, stop_sequences=[stop]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop
    assert final.content[0].text == cut.content[0].text


def test_claude_agent_style_system_blocks_with_cache_control(default_daemon):
    c = client(default_daemon)
    system = [
        {"type": "text", "text": "You are a terse assistant.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in one word.", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
    ]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Sky colour?", "cache_control": {"type": "ephemeral"}}]}
    ]
    message = c.messages.create(
        model=MODEL,
        max_tokens=8,
        system=system,
        messages=messages,
        metadata={"user_id": "agent-1"},
        extra_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"},
    )
    strict(message)
    # (SmolLM2's template writes a default system prompt when there is none: compare with one block.)
    one = c.messages.count_tokens(model=MODEL, system=system[:1], messages=messages)
    with_system = c.messages.count_tokens(model=MODEL, system=system, messages=messages)
    assert with_system.input_tokens > one.input_tokens
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == with_system.input_tokens
    # The beta client (POST /v1/messages?beta=true) is served the same.
    beta = c.beta.messages.create(model=MODEL, max_tokens=8, system=system, messages=messages)
    assert beta.usage.output_tokens > 0


# --- tools ---------------------------------------------------------------------------------------


def test_forced_tool_call_and_the_tool_result_round_trip(default_daemon):
    c = client(default_daemon)
    messages: list[dict] = ask("What is the weather in Paris?")
    called = c.messages.create(
        model=MODEL,
        max_tokens=60,
        extra_body=GREEDY,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=messages,
    )
    strict(called)
    assert called.stop_reason == "tool_use"
    (use,) = [b for b in called.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.id
    jsonschema.validate(use.input, WEATHER["input_schema"])  # grammar-constrained: it must
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in called.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "18 C, sunny"}]},
                {"type": "text", "text": "So, what should I wear?"},
            ],
        },
    ]
    answer = c.messages.create(model=MODEL, max_tokens=30, tools=[WEATHER], messages=messages)
    strict(answer)
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")
    # An error result (is_error) and string content are taken too.
    messages[-1]["content"][0] = {"type": "tool_result", "tool_use_id": use.id, "content": "timeout", "is_error": True}
    assert c.messages.create(model=MODEL, max_tokens=5, messages=messages, tools=[WEATHER]).usage.output_tokens > 0


def test_streamed_forced_tool_call_sends_input_json_deltas(default_daemon):
    c = client(default_daemon)
    kw = {
        "model": MODEL,
        "max_tokens": 60,
        "tools": [WEATHER],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": ask("Weather in Oslo, in celsius?"),
    }
    events = raw_events(default_daemon, {**kw, **GREEDY})
    for name, data in events:
        if name != "ping":
            strict(EVENTS.validate_python(data, strict=True))
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [s["type"] for s in starts] == ["tool_use"] and starts[0]["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    jsonschema.validate(json.loads(partial), WEATHER["input_schema"])
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    with c.messages.stream(**kw, extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    (use,) = final.content
    assert use.type == "tool_use" and use.input == json.loads(partial)


def test_tool_choice_none_and_auto_answer_text(default_daemon):
    c = client(default_daemon)
    m = c.messages.create(
        model=MODEL, max_tokens=10, tools=[WEATHER], tool_choice={"type": "none"}, messages=ask("Hi!")
    )
    assert [b.type for b in m.content] == ["text"] and m.stop_reason != "tool_use"


def test_output_config_format_is_a_grammar_constrained_json_answer(default_daemon):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    message = client(default_daemon).messages.create(
        model=MODEL,
        max_tokens=60,
        messages=ask("Invent a person."),
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}, "top_k": 1},
    )
    jsonschema.validate(json.loads(message.content[0].text), schema)
    # top_k is an optional parameter: the mock does not honour it, and says so by name.
    with pytest.raises(anthropic.BadRequestError) as e:
        client(default_daemon).messages.create(
            model="mock-vision", max_tokens=5, messages=ask("hi"), extra_body={"top_k": 5}
        )
    assert "top_k" in e.value.message


# --- images --------------------------------------------------------------------------------------


def test_image_blocks_go_to_the_vision_model(default_daemon):
    c = client(default_daemon)
    data = base64.b64encode(png()).decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "What colour is this?"},
    ]
    raw = c.messages.with_raw_response.create(
        model=MODEL, max_tokens=40, messages=[{"role": "user", "content": content}]
    )
    message = valid_message(raw.http_response.json())
    assert raw.headers["x-loom-model"] == "mock-vision"  # SmolLM2 cannot see: the vision route serves
    assert message.content[0].text
    # A URL source is fetched by the daemon, through the guard: this daemon's own file is read.
    url = httpx.post(
        f"{default_daemon.url}/v1/images/generations",
        json={"model": "mock-image", "prompt": "a red square", "size": "64x64", "response_format": "url"},
    ).json()["data"][0]["url"]
    content[0] = {"type": "image", "source": {"type": "url", "url": url}}
    by_url = c.messages.create(model="mock-vision", max_tokens=40, messages=[{"role": "user", "content": content}])
    assert by_url.content[0].text
    # ... and a private address elsewhere is refused, naming the block.
    content[0] = {"type": "image", "source": {"type": "url", "url": "http://10.0.0.1/cat.png"}}
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="mock-vision", max_tokens=10, messages=[{"role": "user", "content": content}])
    assert "messages[0].content[0].source" in e.value.message
    content[0] = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "bm90IGFuIGltYWdl"}}
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="mock-vision", max_tokens=10, messages=[{"role": "user", "content": content}])
    assert "messages[0].content[0].source.data" in e.value.message


# --- count_tokens --------------------------------------------------------------------------------


def test_count_tokens_is_the_prompt_the_model_evaluates(default_daemon):
    c = client(default_daemon)
    messages = ask("Count me, please.")
    raw = c.messages.with_raw_response.count_tokens(model=MODEL, messages=messages)
    counted = strict(MessageTokensCount.model_validate(raw.http_response.json(), strict=True))
    assert raw.headers["x-loom-model"] == MODEL
    used = c.messages.create(model=MODEL, max_tokens=2, messages=messages).usage
    assert counted.input_tokens == used.input_tokens + used.cache_read_input_tokens
    with_tools = c.messages.count_tokens(model=MODEL, messages=messages, tools=[WEATHER])
    assert with_tools.input_tokens > counted.input_tokens  # the template writes the tools in
    longer = c.messages.count_tokens(model=MODEL, messages=ask("Count me, please. " * 10))
    assert longer.input_tokens > counted.input_tokens + 20


# --- errors --------------------------------------------------------------------------------------


def error_of(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = strict(ErrorResponse.model_validate(r.json(), strict=True))
    assert body.error.type == kind
    return body.error.message


def test_bad_input_is_a_400_in_anthropics_shape_naming_the_field(default_daemon):
    url = f"{default_daemon.url}/v1/messages"
    r = httpx.post(url, json={"model": MODEL, "messages": ask("hi")})
    assert "max_tokens" in error_of(r, 400, "invalid_request_error")
    r = httpx.post(url, json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})
    assert "messages[0].role" in error_of(r, 400, "invalid_request_error")
    r = httpx.post(url, json={"model": MODEL, "max_tokens": 0, "messages": ask("hi")})
    assert "max_tokens" in error_of(r, 400, "invalid_request_error")
    r = httpx.post(url, json={"model": MODEL, "max_tokens": 5, "messages": ask("hi"), "frequency_penalty": 1})
    assert "frequency_penalty" in error_of(r, 400, "invalid_request_error")
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    error_of(r, 400, "invalid_request_error")
    r = httpx.post(f"{url}/count_tokens", json={"messages": ask("hi")})
    assert "model" in error_of(r, 400, "invalid_request_error")

    c = client(default_daemon)
    orphan = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "42"}]},
    ]
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model=MODEL, max_tokens=5, messages=orphan)
    assert "messages[0].content[0].tool_use_id" in e.value.message and "toolu_nope" in e.value.message
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(
            model=MODEL, max_tokens=5, messages=ask("hi"), tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}
        )
    assert "tool_choice.name" in e.value.message
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model=MODEL, max_tokens=5, messages=[*ask("hi"), {"role": "assistant", "content": "Hel"}])
    assert "messages[1]" in e.value.message
    bad_schema = {**WEATHER, "input_schema": {"type": "array"}}
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model=MODEL, max_tokens=5, messages=ask("hi"), tools=[bad_schema])
    assert "tools[0].input_schema" in e.value.message
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(
            model=MODEL, max_tokens=5, messages=ask("hi"), thinking={"type": "enabled", "budget_tokens": 1024}
        )
    assert "thinking" in e.value.message
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="no-such-model", max_tokens=5, messages=ask("hi"))
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(model="no-such-model", messages=ask("hi"))
    # OpenAI's routes keep OpenAI's shape.
    r = httpx.post(f"{default_daemon.url}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


SLOW_CONFIG = (
    MOCK_CONFIG.replace(
        '[daemon]\nhost = "127.0.0.1"\n',
        '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_ANT_KEY" }\n',
    )
    + """
[[models]]
id = "mock-slow"
provider = "mock"
capabilities = ["chat"]
max_queue = 1
options = { latency_ms = 1500 }
"""
)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anthropic")
    d = Daemon(write_config(tmp / "loom.toml", SLOW_CONFIG), tmp / "data", env={"T_ANT_KEY": "ant-key-1"}).start()
    yield d
    d.stop()


def test_keys_by_x_api_key_or_bearer_and_anthropic_errors(keyed):
    ok = client(keyed, "ant-key-1").messages.create(model="mock-chat", max_tokens=5, messages=ask("hi"))
    assert ok.usage.output_tokens == 5  # the package sends x-api-key
    bearer = anthropic.Anthropic(base_url=keyed.url, auth_token="ant-key-1", max_retries=0)
    assert bearer.messages.count_tokens(model="mock-chat", messages=ask("hi there")).input_tokens == 2
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(keyed, "wrong").messages.create(model="mock-chat", max_tokens=5, messages=ask("hi"))
    assert e.value.body["error"]["type"] == "authentication_error" and "x-api-key" in e.value.message
    r = httpx.post(f"{keyed.url}/v1/messages/count_tokens", json={"model": "mock-chat", "messages": ask("hi")})
    error_of(r, 401, "authentication_error")
    # A broken model fails before the stream starts: its status, Anthropic's shape.
    with pytest.raises(anthropic.APIStatusError) as e:
        client(keyed, "ant-key-1").messages.create(model="mock-broken", max_tokens=5, messages=ask("hi"), stream=True)
    assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"
    assert "caught fire" in e.value.body["error"]["message"]


def test_a_full_queue_is_529_overloaded_with_retry_after(keyed):
    import threading

    c = client(keyed, "ant-key-1")
    errors: list[Exception] = []

    def call() -> None:
        try:
            c.messages.create(model="mock-slow", max_tokens=3, messages=ask("hi"))
        except anthropic.APIStatusError as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
        __import__("time").sleep(0.2)
    for t in threads:
        t.join(30)
    assert errors and all(isinstance(e, anthropic.OverloadedError) for e in errors)
    e = errors[0]
    assert e.status_code == 529 and int(e.response.headers["retry-after"]) >= 1
    assert strict(ErrorResponse.model_validate(e.body, strict=True)).error.type == "overloaded_error"
