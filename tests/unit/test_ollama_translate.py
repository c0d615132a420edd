"""The translation of Ollama's requests that no live model here can show: the fill-in-the-middle
prompt (SmolLM2's vocabulary has no such tokens), Go durations, and tool results matched to calls."""

from __future__ import annotations

import math

import msgspec
import pytest
from loom.daemon.ollama import options, translate
from loom.daemon.ollama.wire import OllamaGenerateRequest, OllamaMessage
from loom.sdk.errors import InvalidRequest, UnsupportedParameter
from loom.sdk.types import AssistantMessage, ToolMessage


def generate(**kw) -> OllamaGenerateRequest:
    return msgspec.convert({"model": "m", **kw}, OllamaGenerateRequest)


def test_suffix_builds_the_models_fill_in_the_middle_prompt():
    fim = ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")
    prompt, req = translate.completion(
        generate(prompt="def add(a, b):\n", suffix="\n    return c", options={"num_predict": 9}), "m", 2048, fim
    )
    assert prompt == "<fim_prefix>def add(a, b):\n<fim_suffix>\n    return c<fim_middle>"
    assert req.prompt == prompt and req.max_tokens == 9
    with pytest.raises(UnsupportedParameter, match="no fill-in-the-middle tokens"):
        translate.completion(generate(prompt="x", suffix="y"), "m", 2048, None)
    # Without a limit, the context is the limit.
    assert translate.completion(generate(prompt="x", raw=True), "m", 2048, None)[1].max_tokens == 2048


def test_raw_refuses_what_a_completion_cannot_carry():
    with pytest.raises(UnsupportedParameter) as e:
        translate.completion(generate(prompt="x", raw=True, options={"top_k": 5}), "m", 2048, None)
    assert e.value.param == "options.top_k"
    with pytest.raises(UnsupportedParameter) as e:
        translate.completion(generate(prompt="x", raw=True, format="json"), "m", 2048, None)
    assert e.value.param == "format"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (300, 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("0", 0.0),
        (0, 0.0),
        ("-1", math.inf),
        (-1, math.inf),
        ("-5m", math.inf),
        ("45", 45.0),
        (None, None),
    ],
)
def test_keep_alive_durations(value, seconds):
    assert options.keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 m", "m", "", True, "1d"])
def test_bad_keep_alive(value):
    with pytest.raises(InvalidRequest):
        options.keep_alive(value)


def test_tool_results_answer_calls_by_id_then_name_then_order():
    def call(name, id_=None):
        out = {"function": {"name": name, "arguments": {"x": 1}}}
        return {**out, "id": id_} if id_ else out

    items = msgspec.convert(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b"), call("c", "mine")]},
            {"role": "tool", "content": "B", "tool_name": "b"},
            {"role": "tool", "content": "C", "tool_call_id": "mine"},
            {"role": "tool", "content": "A"},
        ],
        list[OllamaMessage],
    )
    out = translate.messages(items)
    assistant = out[1]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content is None and [c.id for c in assistant.tool_calls] == ["call_1", "call_2", "mine"]
    assert assistant.tool_calls[0].function.arguments == '{"x": 1}'
    answers = [m for m in out if isinstance(m, ToolMessage)]
    assert [(m.content, m.tool_call_id) for m in answers] == [("B", "call_2"), ("C", "mine"), ("A", "call_1")]
    extra = msgspec.convert([*msgspec.to_builtins(items), {"role": "tool", "content": "?"}], list[OllamaMessage])
    with pytest.raises(InvalidRequest) as e:
        translate.messages(extra)
    assert e.value.param == "messages[5]"


def test_options_map_to_chat_fields():
    fields = options.chat_options({"num_predict": -1, "stop": "\n", "top_k": 3, "seed": None}, 2048)
    assert fields == {"stop": ["\n"], "top_k": 3}
    assert translate.shown("max_tokens") == "options.num_predict" and translate.shown("response_format") == "format"
