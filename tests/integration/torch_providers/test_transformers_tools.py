"""Tools on the transformers provider: the tokenizer's chat template gets ``tools=``, calls are
parsed from the text, a forced call is refused by name. On the tiny random-weight GPT-2."""

from __future__ import annotations

import httpx
import msgspec
import pytest

pytest.importorskip("torch")

from loom.plugins.transformers import TransformersTextProvider
from loom.sdk import RunContext, UnsupportedParameter
from loom.sdk.protocols import ModelSpec
from loom.sdk.types import ChatCompletionRequest

#: A Hugging Face style template that lays out tools, calls and results (like Qwen 2.5's).
TOOL_TEMPLATE = (
    "{%- if tools %}<|system|>Tools:{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n{%- endif %}"
    "{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}"
    "{%- if m.tool_calls %}{%- for c in m.tool_calls %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>{%- endfor %}{%- endif %}"
    "{%- if m.role == 'tool' %} (answers {{ m.tool_call_id }} of {{ m.name }}){%- endif %}\n"
    "{%- endfor %}{%- if add_generation_prompt %}<|assistant|>{%- endif %}"
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Forecast",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]


def request(**body) -> ChatCompletionRequest:
    return msgspec.convert({"model": "tiny", "messages": HISTORY, "seed": 1, **body}, ChatCompletionRequest)


def provider(tiny_models, **options) -> TransformersTextProvider:
    spec = ModelSpec(
        id="tiny",
        provider="transformers",
        options={"model": str(tiny_models["gpt2_long"]), "max_new_tokens": 8, **options},
    )
    p = TransformersTextProvider(spec)
    p.load("cpu")
    return p


def test_a_tool_template_gets_tools_calls_and_results(tiny_models):
    p = provider(tiny_models, chat_template=TOOL_TEMPLATE)
    try:
        text, templated = p._chat_text(request(tools=TOOLS))
        assert templated
        assert text.startswith('<|system|>Tools:{"type": "function", "function": {"name": "get_weather"')
        # Arguments reach the template as a mapping, and the tool turn knows the call's name.
        assert '<call>get_weather {"city": "Paris"}</call>' in text
        assert "<|tool|>sunny (answers c1 of get_weather)" in text
        chunks = list(p.chat(request(tools=TOOLS, top_k=5, min_p=0.05, repeat_penalty=1.2), RunContext()))
        assert chunks[-1].finish_reason in ("stop", "length", "tool_calls")
    finally:
        p.unload()


def test_a_template_without_tools_gets_them_in_a_system_turn(tiny_models):
    p = provider(tiny_models)  # the tiny model's own template knows roles only
    try:
        text, _ = p._chat_text(request(tools=TOOLS))
        assert text.startswith("<|system|>You may call one or more functions")
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
        assert "<|user|><tool_response>\nsunny\n</tool_response>" in text
    finally:
        p.unload()


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_is_refused_by_name(tiny_models, choice):
    p = provider(tiny_models)
    try:
        with pytest.raises(UnsupportedParameter) as e:
            p.chat(request(tools=TOOLS, tool_choice=choice), RunContext())
        assert e.value.param == "tool_choice"
    finally:
        p.unload()


def test_over_http(torch_daemon):
    url = f"{torch_daemon.url}/v1/chat/completions"
    body = {"model": "tiny-gpt2-long", "messages": HISTORY, "tools": TOOLS, "max_tokens": 6, "top_k": 10}
    ok = httpx.post(url, json=body, timeout=180)
    assert ok.status_code == 200 and "x-loom-ignored" not in ok.headers, ok.text
    forced = httpx.post(url, json={**body, "tool_choice": "required"}, timeout=180)
    assert forced.status_code == 400 and forced.json()["error"]["param"] == "tool_choice"
    logprobs = httpx.post(url, json={**body, "logprobs": True}, timeout=180)
    assert logprobs.status_code == 400 and logprobs.json()["error"]["param"] == "logprobs"
