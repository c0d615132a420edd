"""A generation's chunks as Ollama's answer lines, with the counts and durations it measured.

Durations are nanoseconds on the daemon's monotonic clock, from the request's arrival:

- ``load_duration``: the model's load when this request loaded it (the scheduler's measured
  load time); otherwise the time from arrival to the call (decoding, routing, admission).
- ``prompt_eval_duration``: from the call to the first chunk (queue wait and prompt
  evaluation, less a load this request caused); ``eval_duration``: from the first chunk to the
  last; ``total_duration``: arrival to the last chunk.
- ``prompt_eval_count``: the prompt tokens the model evaluated, which is the prompt less what a
  prompt cache served (``TextChunk.cached_tokens``), as Ollama counts them; ``eval_count``: the
  tokens generated.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from typing import Any

from loom.sdk.errors import ProviderError
from loom.sdk.protocols import TextChunk
from loom.sdk.types import TokenLogprob

from ..chat.assemble import ChoiceBuilder
from .wire import (
    OllamaChatAnswer,
    OllamaGenerateAnswer,
    OllamaLogprob,
    OllamaOutMessage,
    OllamaToolCall,
    OllamaToolFunction,
    OllamaTopLogprob,
)


def now() -> str:
    """RFC 3339 in UTC with nanosecond digits, as Ollama writes ``created_at``."""
    t = time.time_ns()
    base = dt.datetime.fromtimestamp(t // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{t % 1_000_000_000:09d}Z"


class Clock:
    """When the request arrived, the call started, the first and the last chunk came."""

    def __init__(self) -> None:
        self.arrived = time.perf_counter_ns()
        self.called = self.first = self.last = self.arrived
        #: Nanoseconds spent loading the model for this request (0: it was resident).
        self.load = 0

    def call(self) -> None:
        self.called = time.perf_counter_ns()

    def started(self, load_seconds: float | None) -> None:
        self.first = self.last = time.perf_counter_ns()
        if load_seconds is not None:
            self.load = int(load_seconds * 1e9)

    def tick(self) -> None:
        self.last = time.perf_counter_ns()

    def stats(self, prompt: int, cached: int, generated: int) -> dict[str, int]:
        load = self.load or max(1, self.called - self.arrived)
        return {
            "total_duration": max(1, self.last - self.arrived),
            "load_duration": load,
            "prompt_eval_count": max(0, prompt - cached),
            "prompt_eval_duration": max(1, self.first - self.called - self.load),
            "eval_count": generated,
            "eval_duration": max(1, self.last - self.first),
        }


def done_reason(finish: str) -> str:
    """Ollama says ``stop`` for an answer that called tools, and ``length`` at the limit."""
    return "stop" if finish in ("stop", "tool_calls") else finish


def logprobs(items: Iterable[TokenLogprob] | None) -> list[OllamaLogprob] | None:
    if items is None:
        return None
    return [
        OllamaLogprob(
            token=t.token,
            logprob=t.logprob,
            bytes=t.bytes,
            top_logprobs=[OllamaTopLogprob(x.token, x.logprob, x.bytes) for x in t.top_logprobs] or None,
        )
        for t in items
    ]


class Answer:
    """Collects one generation and makes its lines: ``chat`` (``/api/chat``) or not (``/api/generate``)."""

    def __init__(self, model: str, chat: bool, clock: Clock) -> None:
        self.model, self.chat, self.clock = model, chat, clock
        self.builder = ChoiceBuilder()
        self.prompt = self.cached = self.generated = 0
        self.with_logprobs = False

    def add(self, chunk: TextChunk) -> OllamaChatAnswer | OllamaGenerateAnswer | None:
        """The line for ``chunk`` (None when it carries no text)."""
        self.clock.tick()
        self.builder.add(chunk)
        self.prompt += chunk.prompt_tokens or 0
        self.cached += chunk.cached_tokens or 0
        self.generated += chunk.completion_tokens or 0
        if chunk.logprobs is not None:
            self.with_logprobs = True
        if not chunk.text and chunk.logprobs is None:
            return None
        return self._line(chunk.text, False, fields={"logprobs": logprobs(chunk.logprobs)})

    def tool_calls(self) -> list[OllamaToolCall]:
        out = []
        for i, call in enumerate(self.builder.tool_calls()):
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                raise ProviderError(
                    f"the model's call of {call.function.name} has arguments that are not JSON: "
                    f"{call.function.arguments[:200]!r}"
                ) from None
            if not isinstance(arguments, dict):
                raise ProviderError(f"the model's call of {call.function.name} has arguments that are not an object")
            out.append(
                OllamaToolCall(
                    id=call.id, function=OllamaToolFunction(name=call.function.name, arguments=arguments, index=i)
                )
            )
        return out

    def calls_line(self) -> OllamaChatAnswer | None:
        """The line with the tool calls, once they are whole (Ollama sends each call whole)."""
        calls = self.tool_calls() if self.chat else []
        if not calls:
            return None
        return OllamaChatAnswer(
            model=self.model,
            created_at=now(),
            message=OllamaOutMessage(role="assistant", content="", tool_calls=calls),
            done=False,
        )

    def final(self, whole: bool) -> OllamaChatAnswer | OllamaGenerateAnswer:
        """The last line (``whole``: the only one, with all the text and tool calls)."""
        stats = self.clock.stats(self.prompt, self.cached, self.generated)
        reason = done_reason(self.builder.finish_reason())
        if not whole:
            return self._line("", True, fields={"done_reason": reason, **stats})
        lp = logprobs(self.builder.logprobs) if self.with_logprobs else None
        calls = self.tool_calls() if self.chat else []
        fields = {"logprobs": lp, "done_reason": reason, **stats}
        return self._line(self.builder.content, True, calls=calls or None, fields=fields)

    def _line(
        self, text: str, done: bool, calls: list[OllamaToolCall] | None = None, fields: dict[str, Any] | None = None
    ) -> OllamaChatAnswer | OllamaGenerateAnswer:
        kw = fields or {}
        if self.chat:
            message = OllamaOutMessage(role="assistant", content=text, tool_calls=calls)
            return OllamaChatAnswer(model=self.model, created_at=now(), message=message, done=done, **kw)
        return OllamaGenerateAnswer(model=self.model, created_at=now(), response=text, done=done, **kw)
