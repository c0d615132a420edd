"""A job's token usage and model time (the seed's TokenTracker), kept across resumes."""

from __future__ import annotations

from typing import Any


class Usage:
    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.prompt_tokens: int = saved.get("prompt_tokens", 0)
        self.completion_tokens: int = saved.get("completion_tokens", 0)
        #: capability -> {"calls": n, "seconds": s}
        self.by_capability: dict[str, dict[str, float]] = saved.get("by_capability", {})
        #: model id -> {"calls", "seconds", "prompt_tokens", "completion_tokens"}
        self.by_model: dict[str, dict[str, float]] = saved.get("by_model", {})

    def call(
        self, model: str, capability: str, seconds: float, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        cap = self.by_capability.setdefault(capability, {"calls": 0, "seconds": 0.0})
        cap["calls"] += 1
        cap["seconds"] = round(cap["seconds"] + seconds, 6)
        m = self.by_model.setdefault(model, {"calls": 0, "seconds": 0.0, "prompt_tokens": 0, "completion_tokens": 0})
        m["calls"] += 1
        m["seconds"] = round(m["seconds"] + seconds, 6)
        m["prompt_tokens"] += prompt_tokens
        m["completion_tokens"] += completion_tokens
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def tokens(self, prompt_tokens: int) -> None:
        """Tokens of a call already counted with :meth:`call` (embeddings report them after)."""
        self.prompt_tokens += prompt_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "by_capability": self.by_capability,
            "by_model": self.by_model,
        }
