"""Ollama's API as msgspec Structs: the request bodies Loom decodes and the answers it sends.

The shapes follow Ollama's ``api/types.go`` and the ``ollama`` Python package's pydantic models
(``ChatResponse``, ``GenerateResponse``, ``ShowResponse``, ...), which the tests parse every
answer with. Requests are decoded strictly, as Loom's own are: a field Ollama does not define is
a 400 naming it. Fields Ollama defines and Loom cannot serve are decoded and refused by name in
:mod:`.translate`, with the reason.
"""

from __future__ import annotations

from typing import Any, Literal

from loom.sdk.types import FunctionTool
from msgspec import Struct, field

#: ``format``: "json", "" (none) or a JSON schema.
Format = str | dict[str, Any] | None
#: ``keep_alive``: seconds as a number, or a duration ("5m", "1h30m", "-1" for ever, "0").
KeepAlive = float | int | str | None


class Body(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of Ollama request bodies."""


class ToolFunction(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    index: int | None = None


class ToolCall(Struct, forbid_unknown_fields=True, omit_defaults=True):
    function: ToolFunction
    id: str | None = None
    type: Literal["function"] | None = None


class Message(Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    #: Base64 images (no data: prefix), for a vision model.
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    #: On a tool message: the function it answers (Ollama's), or the call's id (newer clients).
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class ChatRequest(Body):
    """``POST /api/chat``."""

    model: str
    messages: list[Message] = field(default_factory=list)
    tools: list[FunctionTool] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    #: Ollama streams unless told not to.
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class GenerateRequest(Body):
    """``POST /api/generate``."""

    model: str
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # Ollama's experimental image generation; refused by name (Loom's is /v1/images/generations).
    width: int | None = None
    height: int | None = None
    steps: int | None = None


class EmbedRequest(Body):
    """``POST /api/embed``."""

    model: str
    input: str | list[str]
    truncate: bool | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = None


class EmbeddingsRequest(Body):
    """``POST /api/embeddings`` (Ollama's older embedding route)."""

    model: str
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class ModelRef(Body):
    """``POST /api/show``, ``DELETE /api/delete``: ``model`` (``name`` in older clients)."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = None


class PullRequest(Body):
    """``POST /api/pull``: a Hugging Face hub id, ``org/repo`` or ``hf.co/org/repo``, with the
    quantisation as its tag (``:Q4_K_M``)."""

    model: str | None = None
    name: str | None = None
    insecure: bool | None = None
    stream: bool = True


class CopyRequest(Body):
    """``POST /api/copy``."""

    source: str
    destination: str


# --- answers -------------------------------------------------------------------------------------


class Error(Struct):
    """Every error Ollama answers: ``{"error": "..."}``."""

    error: str


class Version(Struct):
    version: str


class Details(Struct, omit_defaults=True):
    format: str
    family: str
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    parent_model: str = ""


class ListedModel(Struct):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class ModelList(Struct):
    models: list[ListedModel]


class Shown(Struct, omit_defaults=True):
    modelfile: str
    parameters: str
    template: str
    details: Details
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    license: str = ""


class RunningModel(Struct):
    name: str
    model: str
    size: int
    digest: str
    details: Details
    expires_at: str
    size_vram: int
    context_length: int | None = None


class RunningList(Struct):
    models: list[RunningModel]


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None


class OutMessage(Struct, omit_defaults=True):
    role: str
    content: str
    tool_calls: list[ToolCall] | None = None


class Stats(Struct, omit_defaults=True):
    """The counts and durations (nanoseconds) of a finished answer."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0


class ChatAnswer(Struct, omit_defaults=True):
    """One line of ``/api/chat`` (the last has ``done`` true, ``done_reason`` and the stats)."""

    model: str
    created_at: str
    message: OutMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[Logprob] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class GenerateAnswer(Struct, omit_defaults=True):
    """One line of ``/api/generate``."""

    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    logprobs: list[Logprob] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class EmbedAnswer(Struct):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingAnswer(Struct):
    embedding: list[float]


class Progress(Struct, omit_defaults=True):
    """One line of ``/api/pull``."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class Status(Struct):
    status: str
