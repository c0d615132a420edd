"""The Messages API's event builder on chunk sequences a live model rarely produces on demand: text
then a tool call, a call cut by max_tokens, an error after the stream began, a prompt cache hit.
Every event is checked against the ``anthropic`` package's own types."""

from __future__ import annotations

import msgspec
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from loom.daemon.anthropic.stream import MessageBuilder
from loom.sdk.errors import ProviderError, QueueFull
from loom.sdk.protocols import TextChunk, ToolCallDelta

EVENTS: pydantic.TypeAdapter = pydantic.TypeAdapter(RawMessageStreamEvent)


def wire(events) -> list[dict]:
    out = []
    for event in events:
        data = msgspec.to_builtins(event)
        if data["type"] not in ("ping", "error"):
            EVENTS.validate_python(data, strict=True)
        out.append(data)
    return out


def run(chunks: list[TextChunk]) -> tuple[list[dict], MessageBuilder]:
    b = MessageBuilder("m")
    events = b.start()
    for c in chunks:
        events += b.chunk(c)
    events += b.finish()
    return wire(events), b


def test_text_then_a_tool_call_are_two_blocks_in_order():
    events, b = run(
        [
            TextChunk(text="Let me look."),
            TextChunk(tool_calls=[ToolCallDelta(index=0, id="toolu_1", name="f", arguments='{"a": ')]),
            TextChunk(tool_calls=[ToolCallDelta(index=0, arguments="1}")]),
            TextChunk(finish_reason="tool_calls", prompt_tokens=30, cached_tokens=20, completion_tokens=9),
        ]
    )
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [e["index"] for e in events if "index" in e] == [0, 0, 0, 1, 1, 1, 1]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    usage = events[-2]["usage"]
    assert usage == {
        "output_tokens": 9,
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
    }
    final = Message.model_validate(msgspec.to_builtins(b.final), strict=True)
    assert [c.type for c in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"a": 1}


def test_a_call_cut_by_max_tokens_keeps_an_empty_input():
    _, b = run(
        [
            TextChunk(tool_calls=[ToolCallDelta(index=0, id="t", name="f", arguments='{"a": [1, ')]),
            TextChunk(finish_reason="length", prompt_tokens=3, completion_tokens=4),
        ]
    )
    assert b.final is not None and b.final.stop_reason == "max_tokens"
    assert b.final.content[0].input == {}


def test_a_call_whose_input_is_not_an_object_is_the_models_error():
    b = MessageBuilder("m")
    b.start()
    b.chunk(TextChunk(tool_calls=[ToolCallDelta(index=0, id="t", name="f", arguments="[1, 2]")]))
    b.chunk(TextChunk(finish_reason="tool_calls", prompt_tokens=3, completion_tokens=4))
    with pytest.raises(ProviderError, match="'f'"):
        b.finish()


def test_the_matched_stop_sequence_is_reported():
    events, b = run([TextChunk(text="a b"), TextChunk(finish_reason="stop", stop_sequence="END", completion_tokens=2)])
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert b.final is not None and b.final.stop_sequence == "END"


@pytest.mark.parametrize(
    ("error", "kind"), [(ProviderError("boom"), "api_error"), (QueueFull("full", retry_after=1), "overloaded_error")]
)
def test_an_error_after_the_start_is_an_error_event(error, kind):
    (event,) = wire(MessageBuilder.fail(error))
    assert event["type"] == "error"
    assert ErrorResponse.model_validate(event, strict=True).error.type == kind
