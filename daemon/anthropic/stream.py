"""From chat chunks to a Messages API answer: content blocks, stream events and the final message.

:class:`MessageBuilder` reads a provider's chat chunks and produces Anthropic's event sequence as
it goes: ``message_start``; per content block ``content_block_start`` (a ``ping`` after the
first), ``content_block_delta`` (``text_delta`` for text, ``input_json_delta`` for a tool call's
input as the model writes it) and ``content_block_stop``; then ``message_delta`` with the stop
reason and the usage, and ``message_stop``. An error after the stream began is an ``error``
event. An answer that is not streamed runs the same builder and keeps only the final message,
so both give the same message.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from loom.sdk.anthropic import (
    AnthropicError,
    ContentBlock,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ErrorEvent,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    MessageUsage,
    Ping,
    StopReason,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)
from loom.sdk.errors import LoomError, ProviderError
from loom.sdk.protocols import TextChunk

from .errors import kind_of


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class MessageBuilder:
    """One answer: :meth:`start`, then :meth:`chunk` per chunk, then :meth:`finish` or :meth:`fail`.

    Each returns the stream events it caused; :attr:`final` is the message once finished.
    """

    def __init__(self, model: str) -> None:
        self.id, self.model = new_id("msg"), model
        self.content: list[ContentBlock] = []
        self._open: TextBlock | ToolUseBlock | None = None
        self._text: list[str] = []
        self._json: list[str] = []
        self._call_index: int | None = None
        self._pinged = False
        self.calls = 0
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.prompt_tokens = self.cached_tokens = self.output_tokens = 0
        self.final: Message | None = None

    def start(self) -> list[StreamEvent]:
        usage = MessageUsage(input_tokens=0, output_tokens=0)
        message = Message(self.id, self.model, [], stop_reason=None, stop_sequence=None, usage=usage)
        return [MessageStart(message=message)]

    def chunk(self, chunk: TextChunk) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        self.prompt_tokens += chunk.prompt_tokens or 0
        self.cached_tokens += chunk.cached_tokens or 0
        self.output_tokens += chunk.completion_tokens or 0
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.stop_sequence = chunk.stop_sequence or self.stop_sequence
        if chunk.text:
            if not isinstance(self._open, TextBlock):
                events += self._close()
                events += self._begin(TextBlock(text=""))
            self._text.append(chunk.text)
            events.append(ContentBlockDelta(index=len(self.content) - 1, delta=TextDelta(text=chunk.text)))
        for delta in chunk.tool_calls or ():
            if delta.index != self._call_index or not isinstance(self._open, ToolUseBlock):
                events += self._close()
                self._call_index = delta.index
                self.calls += 1
                events += self._begin(ToolUseBlock(id=delta.id or new_id("toolu"), name=delta.name or "", input={}))
            if delta.arguments:
                self._json.append(delta.arguments)
                events.append(
                    ContentBlockDelta(index=len(self.content) - 1, delta=InputJSONDelta(partial_json=delta.arguments))
                )
        return events

    def _begin(self, block: TextBlock | ToolUseBlock) -> list[StreamEvent]:
        self._open = block
        self.content.append(block)
        events: list[StreamEvent] = [ContentBlockStart(index=len(self.content) - 1, content_block=_copy(block))]
        if not self._pinged:
            self._pinged = True
            events.append(Ping())
        return events

    def _close(self) -> list[StreamEvent]:
        block, self._open = self._open, None
        if block is None:
            return []
        if isinstance(block, TextBlock):
            block.text, self._text = "".join(self._text), []
        else:
            block.input, self._json = _input(block.name, "".join(self._json), cut=self.finish_reason == "length"), []
        return [ContentBlockStop(index=self.content.index(block))]

    def stop_reason(self) -> StopReason:
        if self.finish_reason == "length":
            return "max_tokens"
        if self.calls:
            return "tool_use"
        if self.stop_sequence is not None:
            return "stop_sequence"
        if self.finish_reason == "content_filter":
            return "refusal"
        return "end_turn"

    def finish(self) -> list[StreamEvent]:
        """Close the open block and end with ``message_delta`` and ``message_stop``."""
        events = self._close()
        reason = self.stop_reason()
        sequence = self.stop_sequence if reason == "stop_sequence" else None
        usage = self.usage()
        self.final = Message(self.id, self.model, list(self.content), reason, sequence, usage)
        delta_usage = MessageDeltaUsage(
            output_tokens=usage.output_tokens,
            input_tokens=usage.input_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
        )
        events.append(MessageDelta(delta=MessageDeltaBody(reason, sequence), usage=delta_usage))
        events.append(MessageStop())
        return events

    def usage(self) -> MessageUsage:
        """Anthropic counts prompt tokens a cache served apart from those evaluated; Loom's prompt
        cache fills itself, so no tokens are ever written to it on request."""
        cached = min(self.cached_tokens, self.prompt_tokens)
        return MessageUsage(
            input_tokens=self.prompt_tokens - cached,
            output_tokens=self.output_tokens,
            cache_creation_input_tokens=0,
            cache_read_input_tokens=cached,
        )

    @staticmethod
    def fail(error: LoomError) -> list[StreamEvent]:
        _, kind = kind_of(error)
        return [ErrorEvent(error=AnthropicError(type=kind, message=error.message))]


def _copy(block: TextBlock | ToolUseBlock) -> TextBlock | ToolUseBlock:
    if isinstance(block, TextBlock):
        return TextBlock(text=block.text)
    return ToolUseBlock(id=block.id, name=block.name, input=dict(block.input))


def _input(name: str, arguments: str, *, cut: bool) -> dict[str, Any]:
    """A tool call's input: its arguments, a JSON object. A call cut off by ``max_tokens`` keeps
    ``{}`` (its partial JSON went out in the stream); any other call that is not an object is
    the model's error, not the client's."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    if cut:
        return {}
    raise ProviderError(f"The model called the tool '{name}' with input that is not a JSON object: {arguments!r}")
