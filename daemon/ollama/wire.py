"""Ollama's API as msgspec Structs: the request bodies Loom decodes and the answers it sends.

The shapes follow Ollama's ``api/types.go`` and the ``ollama`` Python package's pydantic models
(``ChatResponse``, ``GenerateResponse``, ``ShowResponse``, ...), which the tests parse every
answer with. Requests are decoded strictly, as Loom's own are: a field Ollama does not define is
a 400 naming it. Fields Ollama defines and Loom cannot serve are decoded and refused by name in
:mod:`.translate`, with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from loom.sdk.types import FunctionTool
from msgspec import Meta, Struct, field

#: ``format``: "json", "" (none) or a JSON schema.
Format = str | dict[str, Any] | None
#: A model's name (``name:tag``).
Name = Annotated[str, Meta(min_length=1)]
#: ``keep_alive``: seconds as a number, or a duration ("5m", "1h30m", "-1" for ever, "0").
KeepAlive = float | int | str | None


class OllamaBody(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of Ollama request bodies."""


class OllamaToolFunction(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    index: int | None = None


class OllamaToolCall(Struct, forbid_unknown_fields=True, omit_defaults=True):
    function: OllamaToolFunction
    id: str | None = None
    type: Literal["function"] | None = None


class OllamaMessage(Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool"]
    #: null is taken as "" (clients send it next to tool calls).
    content: str | None = ""
    #: Base64 images (no data: prefix), for a vision model.
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    #: On a tool message: the function it answers (Ollama's), or the call's id (newer clients).
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class OllamaChatRequest(OllamaBody):
    """``POST /api/chat``."""

    model: Name
    messages: list[OllamaMessage] = field(default_factory=list)
    tools: list[FunctionTool] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    #: Ollama streams unless told not to.
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class OllamaGenerateRequest(OllamaBody):
    """``POST /api/generate``."""

    model: Name
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


class OllamaEmbedRequest(OllamaBody):
    """``POST /api/embed``."""

    model: Name
    input: str | list[str]
    truncate: bool | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = None


class OllamaEmbeddingsRequest(OllamaBody):
    """``POST /api/embeddings`` (Ollama's older embedding route)."""

    model: Name
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class OllamaModelRef(OllamaBody):
    """``POST /api/show``, ``DELETE /api/delete``."""

    model: Name
    verbose: bool | None = None


class OllamaPullRequest(OllamaBody):
    """``POST /api/pull``: a Hugging Face hub id, ``org/repo`` or ``hf.co/org/repo``, with the
    quantisation as its tag (``:Q4_K_M``)."""

    model: Name
    insecure: bool | None = None
    stream: bool = True


class OllamaCopyRequest(OllamaBody):
    """``POST /api/copy``."""

    source: Name
    destination: Name


# --- answers -------------------------------------------------------------------------------------


class OllamaError(Struct):
    """Every error Ollama answers: ``{"error": "..."}``."""

    error: str


class OllamaVersion(Struct):
    version: str


class OllamaDetails(Struct, omit_defaults=True):
    format: str
    family: str
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    parent_model: str = ""


class OllamaListedModel(Struct):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: OllamaDetails


class OllamaModelList(Struct):
    models: list[OllamaListedModel]


class OllamaShown(Struct, omit_defaults=True):
    modelfile: str
    parameters: str
    template: str
    details: OllamaDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    license: str = ""


class OllamaRunningModel(Struct):
    name: str
    model: str
    size: int
    digest: str
    details: OllamaDetails
    expires_at: str
    size_vram: int
    context_length: int | None = None


class OllamaRunningList(Struct):
    models: list[OllamaRunningModel]


class OllamaTopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None


class OllamaLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[OllamaTopLogprob] | None = None


class OllamaOutMessage(Struct, omit_defaults=True):
    role: str
    content: str
    tool_calls: list[OllamaToolCall] | None = None


class OllamaChatAnswer(Struct, omit_defaults=True):
    """One line of ``/api/chat`` (the last has ``done`` true, ``done_reason`` and the stats)."""

    model: str
    created_at: str
    message: OllamaOutMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[OllamaLogprob] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class OllamaGenerateAnswer(Struct, omit_defaults=True):
    """One line of ``/api/generate``."""

    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    logprobs: list[OllamaLogprob] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class OllamaEmbedAnswer(Struct):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class OllamaEmbeddingAnswer(Struct):
    embedding: list[float]


class OllamaProgress(Struct, omit_defaults=True):
    """One line of ``/api/pull``."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
