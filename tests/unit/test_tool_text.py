"""Tool calls parsed out of generated text (loom.sdk.toolcalls), fed whole and character by character."""

from __future__ import annotations

import itertools
import json

import pytest
from loom.sdk.protocols import ToolCallDelta
from loom.sdk.toolcalls import ToolCallParser


def parse(text: str, step: int | None = None):
    """(text, [(id, name, arguments)], delta pieces) of ``text`` fed in pieces of ``step`` characters."""
    ids = (f"call_{i}" for i in itertools.count())
    parser = ToolCallParser(lambda: next(ids))
    pieces = []
    step = step or len(text) or 1
    for i in range(0, len(text), step):
        pieces += parser.feed(text[i : i + step])
    pieces += parser.close()
    out_text = "".join(p for p in pieces if isinstance(p, str))
    calls: dict[int, list] = {}
    for p in pieces:
        if isinstance(p, ToolCallDelta):
            call = calls.setdefault(p.index, [None, None, ""])
            if p.id is not None:
                assert call[0] is None, "a call's id came twice"
                call[0], call[1] = p.id, p.name
            else:
                assert call[0] is not None, "arguments came before the call's id and name"
            call[2] += p.arguments
    return out_text, [tuple(c) for _, c in sorted(calls.items())], pieces


STEPS = [None, 1, 3, 7]


@pytest.mark.parametrize("step", STEPS)
def test_plain_text_passes_through(step):
    text = "Hello there! <b>bold</b> and {braces} and [brackets]."
    assert parse(text, step)[:2] == (text, [])


@pytest.mark.parametrize("step", STEPS)
def test_hermes_block_streams_name_then_arguments(step):
    args = {"city": "Paris", "days": {"n": 2}, "tags": ["a}", "b"]}
    text = f'<tool_call>\n{{"name": "get_weather", "arguments": {json.dumps(args)}}}\n</tool_call>'
    out, calls, pieces = parse(text, step)
    assert out == ""
    assert calls == [("call_0", "get_weather", json.dumps(args))]
    assert json.loads(calls[0][2]) == args
    if step == 1:
        assert sum(isinstance(p, ToolCallDelta) and p.arguments != "" for p in pieces) > 1, "arguments not streamed"


@pytest.mark.parametrize("step", STEPS)
def test_text_then_two_calls(step):
    text = (
        'Let me check.\n<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "b", "parameters": {"x": 1}}</tool_call>\n'
    )
    out, calls, _ = parse(text, step)
    assert out == "Let me check."
    assert calls == [("call_0", "a", "{}"), ("call_1", "b", '{"x": 1}')]


@pytest.mark.parametrize("step", STEPS)
def test_arguments_first_block_is_read_whole(step):
    text = '<tool_call>{"arguments": {"q": "x"}, "name": "search"}</tool_call>'
    assert parse(text, step)[1] == [("call_0", "search", '{"q": "x"}')]


@pytest.mark.parametrize("step", STEPS)
def test_llama3_json_answer_and_python_tag(step):
    assert parse('{"name": "f", "parameters": {"a": 1}}', step)[1] == [("call_0", "f", '{"a": 1}')]
    assert parse('<|python_tag|>{"name": "f", "arguments": {}}', step)[1] == [("call_0", "f", "{}")]
    # A JSON answer that is not a call stays text.
    assert parse('{"answer": 42}', step)[:2] == ('{"answer": 42}', [])


@pytest.mark.parametrize("step", STEPS)
def test_mistral_calls(step):
    text = '[TOOL_CALLS] [{"name": "a", "arguments": {"k": "v"}}, {"name": "b", "arguments": {}}]'
    assert parse(text, step)[1] == [("call_0", "a", '{"k": "v"}'), ("call_1", "b", "{}")]


def test_a_call_cut_short_keeps_what_was_generated():
    _out, calls, _ = parse('<tool_call>{"name": "f", "arguments": {"city": "Par')
    assert calls == [("call_0", "f", '{"city": "Par')]
    # Ended right after the object without the closing tag: the object's brace is not arguments.
    assert parse('<tool_call>{"name": "f", "arguments": {"a": 1}}')[1] == [("call_0", "f", '{"a": 1}')]


def test_unfinished_marker_is_text():
    assert parse("a <tool_ca")[:2] == ("a <tool_ca", [])
    assert parse("<tool_call>not json")[:2] == ("<tool_call>not json", [])
