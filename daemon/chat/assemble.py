"""Joining a provider's chat chunks into one answer: text, tool calls, log probabilities, usage.

Chat Completions uses it for answers that are not streamed, the Responses API for every answer
(its output items are built from the joined choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loom.sdk.protocols import TextChunk
from loom.sdk.types import (
    ChatChoice,
    ChoiceLogprobs,
    ChoiceMessage,
    FunctionCall,
    PromptTokensDetails,
    TokenLogprob,
    ToolCall,
    Usage,
)
from msgspec import UNSET


@dataclass
class PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChoiceBuilder:
    """Collects the chunks of one generation."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, PendingCall] = {}
        self.logprobs: list[TokenLogprob] | None = None
        self.finish: str | None = None

    def add(self, chunk: TextChunk) -> None:
        if chunk.text:
            self.text.append(chunk.text)
        for delta in chunk.tool_calls or ():
            call = self.calls.setdefault(delta.index, PendingCall())
            call.id = delta.id or call.id
            call.name = delta.name or call.name
            if delta.arguments:
                call.arguments.append(delta.arguments)
        if chunk.logprobs is not None:
            self.logprobs = (self.logprobs or []) + list(chunk.logprobs)
        self.finish = chunk.finish_reason or self.finish

    @property
    def content(self) -> str:
        return "".join(self.text)

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments="".join(c.arguments)))
            for _, c in sorted(self.calls.items())
        ]

    def finish_reason(self) -> str:
        if self.calls and self.finish in (None, "stop"):
            return "tool_calls"
        return self.finish or "stop"

    def choice(self, index: int) -> ChatChoice:
        calls = self.tool_calls()
        text = self.content
        message = ChoiceMessage(
            role="assistant",
            # OpenAI answers null content next to tool calls when the model wrote no text.
            content=text if text or not calls else None,
            refusal=None,
            tool_calls=calls or None,
        )
        logprobs = ChoiceLogprobs(content=self.logprobs) if self.logprobs is not None else None
        return ChatChoice(index, message, self.finish_reason(), logprobs)


def count(usage: Usage, chunk: TextChunk, prompt: bool) -> None:
    """Add a chunk's token counts; ``prompt`` is False for the second and later choices of a
    request (they share its prompt)."""
    if chunk.prompt_tokens is not None and prompt:
        usage.prompt_tokens += chunk.prompt_tokens
        if chunk.cached_tokens is not None:
            details = usage.prompt_tokens_details
            if details is UNSET:
                details = usage.prompt_tokens_details = PromptTokensDetails()
            details.cached_tokens += chunk.cached_tokens
    if chunk.completion_tokens is not None:
        usage.completion_tokens += chunk.completion_tokens
