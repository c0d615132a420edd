"""The parameter policy table: what Loom does with each parameter a chat client may send.

One table serves Chat Completions and the Responses API (a Responses request is translated into a
chat request; the ``responses`` column gives each parameter's name there). Every parameter is one
of three kinds:

- **core**: every chat provider serves it (model, messages, sampling temperature, limits...).
- **bookkeeping**: it never changes the output; accepted, and kept with a stored response.
- **optional**: it changes the output, and only some runtimes can honour it. A provider lists the
  ones it honours in ``Provider.parameters``; for any other, a request that asks for it is refused
  with a 400 naming it (``unsupported_parameter``), unless the daemon's config says
  ``compat = "lenient"``: then the parameter is left out and named in the ``x-loom-ignored``
  response header.

A parameter "asks for something" when its value would change the answer: ``logprobs: false``,
``logit_bias: {}``, ``presence_penalty: 0`` or ``modalities: ["text"]`` ask for nothing and pass
everywhere. README's "Parameters" section is generated from this table (a test keeps it so).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Kind(str, enum.Enum):
    CORE = "core"
    BOOKKEEPING = "bookkeeping"
    OPTIONAL = "optional"


def _given(value: Any) -> bool:
    return value is not None


def _truthy(value: Any) -> bool:
    return bool(value)


@dataclass(frozen=True)
class Param:
    """One row of the table."""

    #: The Chat Completions name (None: the Responses API only).
    chat: str | None
    #: The Responses API's name (None: Chat Completions only).
    responses: str | None
    kind: Kind
    #: What it does in Loom, for the docs.
    note: str
    #: Whether a value asks for something (see the module docstring).
    asks: Callable[[Any], bool] = _given

    @property
    def name(self) -> str:
        return self.chat or self.responses or ""


def _not_text_format(value: Any) -> bool:
    return (
        value is not None
        and getattr(type(value), "__struct_config__", None) is not None
        and (value.__struct_config__.tag != "text")
    )


TABLE: tuple[Param, ...] = (
    # --- core --------------------------------------------------------------------------------
    Param("model", "model", Kind.CORE, "the model id or alias; fallbacks and switches apply"),
    Param("messages", "input", Kind.CORE, "the conversation; image URLs are fetched by the daemon"),
    Param(None, "instructions", Kind.CORE, "a system message put first (not carried to the next response)"),
    Param(None, "previous_response_id", Kind.CORE, "continues a stored response's conversation"),
    Param("stream", "stream", Kind.CORE, "server-sent events"),
    Param("n", None, Kind.CORE, "that many independent generations (seed + index when seeded)"),
    Param("max_tokens", None, Kind.CORE, "limit on generated tokens"),
    Param("max_completion_tokens", "max_output_tokens", Kind.CORE, "limit on generated tokens"),
    Param("temperature", "temperature", Kind.CORE, "sampling temperature; 0 is greedy"),
    Param("top_p", "top_p", Kind.CORE, "nucleus sampling"),
    Param("stop", None, Kind.CORE, "up to 4 stop strings"),
    Param("seed", None, Kind.CORE, "same seed, same request: same answer on deterministic providers"),
    # --- bookkeeping -------------------------------------------------------------------------
    Param("stream_options", "stream_options", Kind.BOOKKEEPING, "include_usage adds a usage chunk"),
    Param("user", "user", Kind.BOOKKEEPING, "kept with a stored response"),
    Param("metadata", "metadata", Kind.BOOKKEEPING, "kept and returned with a stored response"),
    Param("store", "store", Kind.BOOKKEEPING, "Responses: false keeps the response out of the store"),
    Param(
        "service_tier", "service_tier", Kind.BOOKKEEPING, "the scheduling priority: priority > default = auto > flex"
    ),
    Param(
        "prompt_cache_key",
        "prompt_cache_key",
        Kind.BOOKKEEPING,
        "prefix caching is automatic; llama.cpp also keeps the named prompt's state on disk across restarts",
    ),
    Param("prompt_cache_retention", "prompt_cache_retention", Kind.BOOKKEEPING, "accepted"),
    Param("safety_identifier", "safety_identifier", Kind.BOOKKEEPING, "accepted"),
    Param(None, "include", Kind.BOOKKEEPING, "accepted; message.output_text.logprobs asks for logprobs"),
    # --- optional: honoured where the provider declares it ------------------------------------
    Param(
        "response_format",
        "text.format",
        Kind.OPTIONAL,
        "JSON output: llama.cpp (a grammar), mock, remote",
        _not_text_format,
    ),
    Param("presence_penalty", None, Kind.OPTIONAL, "llama.cpp, mock, remote", _truthy),
    Param("frequency_penalty", None, Kind.OPTIONAL, "llama.cpp, mock, remote", _truthy),
    Param("tools", "tools", Kind.OPTIONAL, "function tools: llama.cpp, transformers, mock, remote", _truthy),
    Param(
        "tool_choice",
        "tool_choice",
        Kind.OPTIONAL,
        "none, auto, required, a named function; transformers refuses a forced call",
    ),
    Param("parallel_tool_calls", "parallel_tool_calls", Kind.OPTIONAL, "false: at most one call"),
    Param(
        "logprobs",
        None,
        Kind.OPTIONAL,
        "llama.cpp, remote (Responses: include message.output_text.logprobs)",
        lambda v: v is True,
    ),
    Param("top_logprobs", "top_logprobs", Kind.OPTIONAL, "alternatives per token, 0-20", _truthy),
    Param("logit_bias", None, Kind.OPTIONAL, "token id -> bias: llama.cpp, remote", _truthy),
    Param("top_k", None, Kind.OPTIONAL, "llama.cpp, transformers, remote"),
    Param("min_p", None, Kind.OPTIONAL, "llama.cpp, transformers, remote"),
    Param("repeat_penalty", None, Kind.OPTIONAL, "llama.cpp, transformers, remote", lambda v: v not in (None, 1.0)),
    Param("min_tokens", None, Kind.OPTIONAL, "no end before this many tokens (vLLM's): llama.cpp", _truthy),
    Param(
        "ignore_eos",
        None,
        Kind.OPTIONAL,
        "true: no end before the token limit (load tools send it): llama.cpp",
        _truthy,
    ),
    Param("reasoning_effort", "reasoning.effort", Kind.OPTIONAL, "remote"),
    Param("verbosity", "text.verbosity", Kind.OPTIONAL, "remote"),
    Param("prediction", None, Kind.OPTIONAL, "remote"),
    Param(
        "modalities", None, Kind.OPTIONAL, 'anything but ["text"] (remote)', lambda v: v is not None and v != ["text"]
    ),
    Param(None, "max_tool_calls", Kind.OPTIONAL, "no provider honours it"),
    Param(
        None, "truncation", Kind.OPTIONAL, '"auto": no provider honours it ("disabled" passes)', lambda v: v == "auto"
    ),
    Param(None, "background", Kind.OPTIONAL, "true: no provider honours it (false passes)", lambda v: v is True),
)

BY_CHAT: dict[str, Param] = {p.chat: p for p in TABLE if p.chat}
BY_RESPONSES: dict[str, Param] = {p.responses: p for p in TABLE if p.responses}
#: Parameters that may appear in ``Provider.parameters``.
OPTIONAL: frozenset[str] = frozenset(p.name for p in TABLE if p.kind is Kind.OPTIONAL)
#: What a request that leaves ``temperature`` / ``top_p`` out samples with: OpenAI's defaults.
#: A provider that samples itself (llama.cpp, transformers) reads them from here.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
#: Which optional parameters come with another: honouring "tools" means honouring these too.
COMPANIONS: dict[str, tuple[str, ...]] = {
    "tools": ("tool_choice", "parallel_tool_calls"),
    "logprobs": ("top_logprobs",),
}


def honoured(declared: frozenset[str]) -> frozenset[str]:
    """A provider's declared parameters with their companions."""
    out = set(declared)
    for name in declared:
        out.update(COMPANIONS.get(name, ()))
    return frozenset(out)


def asked(request: Any, honours: frozenset[str]) -> list[str]:
    """Chat names of the optional parameters ``request`` asks for that ``honours`` lacks, in
    table order."""
    return [name for name, p in _unhonoured(frozenset(honours)) if p.asks(getattr(request, name, None))]


@functools.cache
def _unhonoured(honours: frozenset[str]) -> tuple[tuple[str, Param], ...]:
    """(chat name, parameter) of the optional parameters a provider declaring ``honours`` lacks
    (one per provider class: computed once, not for every request)."""
    have = honoured(honours)
    return tuple((p.chat, p) for p in TABLE if p.chat and p.kind is Kind.OPTIONAL and p.chat not in have)


def markdown_table() -> str:
    """The table as Markdown, for README."""
    rows = ["| Chat Completions | Responses | Kind | In Loom |", "|---|---|---|---|"]
    for p in TABLE:
        chat = f"`{p.chat}`" if p.chat else "-"
        responses = f"`{p.responses}`" if p.responses else "-"
        rows.append(f"| {chat} | {responses} | {p.kind.value} | {p.note} |")
    return "\n".join(rows)


__all__ = ["BY_CHAT", "BY_RESPONSES", "OPTIONAL", "TABLE", "Kind", "Param", "asked", "honoured", "markdown_table"]
