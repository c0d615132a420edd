"""Rules of a chat request that span fields, checked before any model is asked.

msgspec checks each field's shape as the body is decoded; what it cannot see is how fields fit
together: a ``tool_choice`` naming a function that is not in ``tools``, a ``tool`` message that
answers no call, a parameter schema that is not an object. Each is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from loom.sdk.errors import InvalidRequest
from loom.sdk.types import AssistantMessage, ChatCompletionRequest, CompletionRequest, NamedToolChoice, ToolMessage


def check_chat(req: ChatCompletionRequest) -> None:
    names = _check_tools(req)
    if req.tool_choice is not None and not req.tools:
        raise InvalidRequest("tool_choice is only allowed when tools are given", param="tool_choice")
    if req.parallel_tool_calls is not None and not req.tools:
        raise InvalidRequest("parallel_tool_calls is only allowed when tools are given", param="parallel_tool_calls")
    if isinstance(req.tool_choice, NamedToolChoice) and req.tool_choice.function.name not in names:
        raise InvalidRequest(
            f"tool_choice names the function '{req.tool_choice.function.name}', which is not in tools "
            f"(tools: {', '.join(names) or 'none'})",
            param="tool_choice.function.name",
        )
    _check_messages(req)
    if req.top_logprobs is not None and req.logprobs is not True:
        raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs")
    _check_min_tokens(req.min_tokens, req.token_limit())


def check_completion(req: CompletionRequest) -> None:
    _check_min_tokens(req.min_tokens, req.max_tokens)


def _check_min_tokens(min_tokens: int | None, limit: int | None) -> None:
    if min_tokens and limit is not None and min_tokens > limit:
        raise InvalidRequest(f"min_tokens ({min_tokens}) is more than max_tokens ({limit})", param="min_tokens")


def _check_tools(req: ChatCompletionRequest) -> list[str]:
    names: list[str] = []
    for i, tool in enumerate(req.tools or []):
        function = tool.function
        if function.name in names:
            raise InvalidRequest(
                f"two tools are named '{function.name}'; function names must be unique",
                param=f"tools[{i}].function.name",
            )
        names.append(function.name)
        if function.parameters is not None:
            check_parameters_schema(function.parameters, f"tools[{i}].function.parameters")
    return names


def check_parameters_schema(schema: dict[str, Any], param: str) -> None:
    """A function's parameters must be a JSON schema of an object (OpenAI's rule too)."""
    kind = schema.get("type", "object")
    if kind != "object":
        raise InvalidRequest(
            f'a function\'s parameters must be a JSON schema of an object ("type": "object"), got type {kind!r}',
            param=param,
        )
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(v, (dict, bool)) for v in properties.values()):
        raise InvalidRequest("properties must map each argument name to a JSON schema", param=f"{param}.properties")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise InvalidRequest("required must be a list of argument names", param=f"{param}.required")


def _check_messages(req: ChatCompletionRequest) -> None:
    calls: set[str] = set()
    for i, m in enumerate(req.messages):
        if isinstance(m, AssistantMessage):
            if m.content is None and not m.tool_calls and m.refusal is None:
                raise InvalidRequest(
                    "an assistant message needs content, tool_calls or refusal", param=f"messages[{i}].content"
                )
            for j, call in enumerate(m.tool_calls or []):
                if call.id in calls:
                    raise InvalidRequest(
                        f"the tool call id '{call.id}' is used twice", param=f"messages[{i}].tool_calls[{j}].id"
                    )
                calls.add(call.id)
        elif isinstance(m, ToolMessage) and m.tool_call_id not in calls:
            raise InvalidRequest(
                f"this tool message answers the call '{m.tool_call_id}', but no earlier assistant message "
                "has a tool call with that id",
                param=f"messages[{i}].tool_call_id",
            )
