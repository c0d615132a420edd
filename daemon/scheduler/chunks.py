"""What a streaming provider yields, checked where its chunks reach the daemon, whatever executor
ran it: each chunk is the call's ``returns`` type (``TextChunk`` for chat and completions), and
nothing follows the chunk that carries ``finish_reason``. A provider that breaks either rule gets
a 502 that says which rule, rather than an ``AttributeError`` deep in a route or a silently dropped
tail (the conformance kit checks the same)."""

from __future__ import annotations

from typing import Any

from loom.sdk.errors import ProviderError


class ChunkCheck:
    def __init__(self, model: str, call: Any) -> None:
        self.model = model
        returns = getattr(call, "returns", None)
        self.expected = returns if getattr(call, "streams", False) and isinstance(returns, type) else None
        self.method = getattr(call, "method", "the call")
        self.finished = False

    def __call__(self, chunk: Any) -> None:
        expected = self.expected
        if expected is None:
            return
        if not isinstance(chunk, expected):
            raise ProviderError(
                f"model '{self.model}': {self.method}() yielded a {type(chunk).__name__}; a stream yields "
                f"loom.sdk.{expected.__name__} objects"
            )
        if self.finished:
            raise ProviderError(
                f"model '{self.model}': {self.method}() yielded a chunk after the one with finish_reason; "
                "finish_reason (and the token counts) belong on the last chunk only"
            )
        if getattr(chunk, "finish_reason", None) is not None:
            self.finished = True
