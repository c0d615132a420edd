"""Agent frameworks and structured-output clients against a live daemon on SmolLM2-135M.

The real packages, as a user would point them at a local OpenAI-compatible server: LangChain's
ChatOpenAI, instructor, the OpenAI Agents SDK (its chat-completions and its responses model),
pydantic-ai, and the ``openai`` package's ``parse`` and ``responses`` helpers. The model is tiny, so
what is checked is what the grammar guarantees: a forced call names an offered function with
arguments that validate, and structured output parses into the requested type. Structured calls
are greedy (temperature 0) with room to finish: a grammar guarantees the shape, not that a sampled
string ends within a few dozen tokens.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from pydantic import BaseModel

from tests.conftest import openai_client
from tests.openai_schema import require_document, validate, validate_event

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"


class City(BaseModel):
    name: str
    country: str


WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Forecast", "parameters": WEATHER}}]
ASK = [{"role": "user", "content": "What is the weather in Paris for the next three days?"}]


@pytest.fixture(scope="module")
def base(default_daemon) -> str:
    return f"{default_daemon.url}/v1"


@pytest.fixture(scope="module")
def client(default_daemon):
    return openai_client(default_daemon, timeout=120)


# --- raw HTTP: what the grammar guarantees ---------------------------------------------------------


def test_a_forced_call_on_smollm2_validates_plain_and_streamed(default_daemon):
    require_document()
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": "required", "max_tokens": 80, "seed": 1}
    r = httpx.post(f"{default_daemon.url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    validate(r.json(), "CreateChatCompletionResponse")
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER)

    pieces, chunks = [], []
    with httpx.stream(
        "POST", f"{default_daemon.url}/v1/chat/completions", json={**body, "stream": True}, timeout=120
    ) as s:
        for line in s.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            pieces.append(delta)
    assert pieces[0]["id"] and pieces[0]["function"]["name"] == "get_weather"
    arguments = "".join(p["function"].get("arguments", "") for p in pieces)
    assert len(pieces) > 2, "the arguments should stream in pieces"
    jsonschema.validate(json.loads(arguments), WEATHER)


def test_logprobs_and_sampling_knobs_are_honoured(default_daemon):
    require_document()
    body = {
        "model": MODEL,
        "messages": ASK,
        "max_tokens": 6,
        "logprobs": True,
        "top_logprobs": 3,
        "top_k": 20,
        "min_p": 0.1,
        "repeat_penalty": 1.2,
        "logit_bias": {"28": -5},
    }
    r = httpx.post(f"{default_daemon.url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200 and "x-loom-ignored" not in r.headers, r.text
    validate(r.json(), "CreateChatCompletionResponse")
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert content and all(len(t["top_logprobs"]) == 3 and t["logprob"] <= 0 for t in content)
    assert "".join(t["token"] for t in content) == r.json()["choices"][0]["message"]["content"]


# --- the openai package's helpers ---------------------------------------------------------------------------


def test_openai_parse_and_responses_helpers(client, default_daemon):
    require_document()
    parsed = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Paris is in France."}],
        response_format=City,
        max_tokens=200,
        temperature=0,
    )
    assert isinstance(parsed.choices[0].message.parsed, City)
    r = client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=16)
    assert r.output_text and r.status in ("completed", "incomplete")
    validate(httpx.get(f"{default_daemon.url}/v1/responses/{r.id}").json(), "Response")
    structured = client.responses.parse(
        model=MODEL, input="Paris is in France.", text_format=City, max_output_tokens=200, temperature=0
    )
    assert isinstance(structured.output_parsed, City)
    events = []
    with client.responses.stream(
        model=MODEL,
        input="Weather?",
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER}],
        tool_choice="required",
        max_output_tokens=200,
        temperature=0,
    ) as stream:
        for event in stream:
            events.append(event.model_dump(mode="json", exclude_unset=True))
        final = stream.get_final_response()
    for event in events:
        validate_event(event)
    (call,) = [item for item in final.output if item.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), WEATHER)


# --- LangChain ---------------------------------------------------------------------------------------------


def test_langchain_invoke_stream_structured_output_and_bind_tools(base):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=base, api_key="unused", model=MODEL, max_tokens=200, temperature=0, max_retries=0)
    assert llm.invoke("Say hi.").content
    assert "".join(chunk.content for chunk in llm.stream("Say hi."))
    for method in ("json_schema", "function_calling"):
        city = llm.with_structured_output(City, method=method).invoke("Paris is a city in France.")
        assert isinstance(city, City), method

    @tool
    def get_weather(city: str, unit: str) -> str:
        """The weather forecast for a city, in celsius or fahrenheit."""
        return "sunny"

    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Paris?")
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    jsonschema.validate(call["args"], get_weather.tool_call_schema.model_json_schema())


# --- instructor ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_instructor(client, mode):
    import instructor

    patched = instructor.from_openai(client, mode=getattr(instructor.Mode, mode))
    city = patched.chat.completions.create(
        model=MODEL,
        response_model=City,
        messages=[{"role": "user", "content": "Paris is a city in France."}],
        max_tokens=200,
        temperature=0,
        max_retries=0,
    )
    assert isinstance(city, City)


# --- the OpenAI Agents SDK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chat_completions", "responses"])
def test_openai_agents_calls_a_function_tool(default_daemon, kind):
    import openai
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    aclient = openai.AsyncOpenAI(base_url=f"{default_daemon.url}/v1", api_key="unused", max_retries=0, timeout=120)
    model_cls = OpenAIChatCompletionsModel if kind == "chat_completions" else OpenAIResponsesModel
    agent = Agent(
        name="forecaster",
        instructions="Answer with the weather tool.",
        tools=[weather],
        model=model_cls(model=MODEL, openai_client=aclient),
        model_settings=ModelSettings(tool_choice="required", max_tokens=200, temperature=0),
        tool_use_behavior="stop_on_first_tool",
    )
    result = Runner.run_sync(agent, "What is the weather in Paris?", max_turns=2)
    assert len(calls) == 1 and isinstance(calls[0], str)
    assert result.final_output == f"sunny in {calls[0]}"


# --- pydantic-ai ---------------------------------------------------------------------------------------------


def test_pydantic_ai_structured_output(base):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=base, api_key="unused"))
    agent = Agent(model, output_type=City, retries=0)
    result = agent.run_sync("Paris is a city in France.", model_settings={"max_tokens": 200, "temperature": 0})
    assert isinstance(result.output, City)
