"""A response's input items as ``GET /v1/responses/{id}/input_items`` lists them.

OpenAI lists each input item as a resource: with an id (the client's, or one given here) and a
status, a message's text as ``input_text`` parts (an assistant message's as ``output_text``), in
the order they were sent. They are built once, when the response is stored.
"""

from __future__ import annotations

from typing import Any

import msgspec
from loom.sdk.errors import NotFound
from loom.sdk.responses import FunctionCallItem, FunctionCallOutputItem, InputItem, InputText, MessageItem

from .stream import new_id


def resources(items: list[InputItem]) -> list[dict[str, Any]]:
    """The items as listed resources (item references are refused before a response exists)."""
    out = []
    for item in items:
        if isinstance(item, MessageItem):
            out.append(_message(item))
        elif isinstance(item, FunctionCallItem):
            out.append(
                {
                    "id": item.id or new_id("fc"),
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                    "status": item.status or "completed",
                }
            )
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output if isinstance(item.output, str) else msgspec.to_builtins(item.output)
            out.append(
                {
                    "id": item.id or new_id("fco"),
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": output,
                    "status": item.status or "completed",
                }
            )
    return out


def _message(item: MessageItem) -> dict[str, Any]:
    assistant = item.role == "assistant"
    parts = [InputText(text=item.content)] if isinstance(item.content, str) else item.content
    content = []
    for part in msgspec.to_builtins(parts):
        if assistant and part["type"] == "input_text":
            part = {"type": "output_text", "text": part["text"]}
        if part["type"] == "output_text":  # OpenAI's output text always carries both lists
            part.setdefault("annotations", [])
            part.setdefault("logprobs", [])
        content.append(part)
    return {
        "id": item.id or new_id("msg"),
        "type": "message",
        "role": item.role,
        "content": content,
        "status": item.status or "completed",
    }


def page(items: list[dict[str, Any]], *, limit: int, order: str, after: str | None) -> dict[str, Any]:
    """One page of the list: ``order`` "desc" (OpenAI's default) lists the last item first;
    ``after`` is the id of the item the previous page ended with."""
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        ids = [i["id"] for i in ordered]
        if after not in ids:
            # The cursor names something that is not there: as a missing resource, not a bad request.
            raise NotFound(f"No input item with id '{after}' in this response", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "has_more": len(ordered) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
