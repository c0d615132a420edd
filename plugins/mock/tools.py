"""Deterministic tool calls for the mock's chat: which functions to call and with what arguments.

The arguments are drawn from each function's parameter schema (:mod:`.jsongen`), so they
validate against it. A forced call (``required`` or a named function) always calls; ``auto``
calls when the conversation ends with a user message and answers in text once tool results
came back, so an agent loop driving the mock ends.
"""

from __future__ import annotations

import random

from loom.sdk.protocols import ToolCallDelta
from loom.sdk.types import ChatCompletionRequest, FunctionDefinition, ToolMessage, UserMessage

from . import jsongen
from .text import pieces


def wants_call(request: ChatCompletionRequest) -> bool:
    mode = request.tool_mode()
    if mode in ("required", "named"):
        return True
    if mode == "auto":
        return isinstance(request.messages[-1], UserMessage)
    return False


def choose(request: ChatCompletionRequest, r: random.Random) -> list[FunctionDefinition]:
    """One function, or two different ones when parallel calls are allowed and not forced."""
    functions = request.callable_tools()
    several = request.parallel_calls() and request.tool_mode() == "auto" and len(functions) >= 2
    return r.sample(functions, 2) if several else [r.choice(functions)]


def call_deltas(request: ChatCompletionRequest, r: random.Random) -> list[list[ToolCallDelta]]:
    """Per call, its pieces: id and name first, then the arguments in a few pieces."""
    out = []
    for index, function in enumerate(choose(request, r)):
        arguments = jsongen.dumps(jsongen.from_schema(function.schema(), r))
        call_id = f"call_{r.getrandbits(96):024x}"
        parts = [ToolCallDelta(index=index, id=call_id, name=function.name)]
        parts += [ToolCallDelta(index=index, arguments=p) for p in _split(arguments)]
        out.append(parts)
    return out


def _split(text: str) -> list[str]:
    """A JSON text in a few pieces (at spaces), joined back exactly."""
    found = pieces(text)
    if len(found) <= 3:
        return found or [text]
    step = -(-len(found) // 3)
    return ["".join(found[i : i + step]) for i in range(0, len(found), step)]


def last_tool_result(request: ChatCompletionRequest) -> str | None:
    last = request.messages[-1]
    return last.text() if isinstance(last, ToolMessage) else None
