"""Wire types of Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``).

Requests decode strictly like every Loom request (an unknown field is a 400 naming it), with
Anthropic's names: content blocks are tagged unions on ``type``. ``cache_control`` is accepted
wherever Anthropic takes it and has no effect (Loom's prompt cache needs no breakpoints). The
answer types list the fields Anthropic always sends without defaults, so they are always written
(null when empty), as the ``anthropic`` package's own types expect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from .types import FunctionName, Request, TopP

#: ``cache_control`` as clients send it (``{"type": "ephemeral", "ttl": "5m"}``): accepted, ignored.
CacheControl = dict[str, Any]

# --- request content blocks ----------------------------------------------------------------------


class Block(Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    """Base of the content blocks a request may hold."""


class TextBlockParam(Block, tag="text"):
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64ImageSource(Struct, tag_field="type", tag="base64", forbid_unknown_fields=True):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLImageSource(Struct, tag_field="type", tag="url", forbid_unknown_fields=True):
    url: str


class ImageBlockParam(Block, tag="image"):
    source: Base64ImageSource | URLImageSource
    cache_control: CacheControl | None = None


class ToolUseBlockParam(Block, tag="tool_use"):
    """An earlier answer's tool call, sent back."""

    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlockParam(Block, tag="tool_result"):
    """The result of the tool call ``tool_use_id``: text, or text and image blocks."""

    tool_use_id: str
    content: str | list[TextBlockParam | ImageBlockParam] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


ContentBlockParam = TextBlockParam | ImageBlockParam | ToolUseBlockParam | ToolResultBlockParam


class MessageParam(Struct, forbid_unknown_fields=True):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlockParam]


# --- tools ---------------------------------------------------------------------------------------


class ToolParam(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A client tool: its input is described by a JSON schema of an object."""

    name: FunctionName
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: CacheControl | None = None
    #: The input must follow the schema (a forced call is grammar-constrained on llama.cpp anyway).
    strict: bool | None = None
    #: Stream the input as it is generated: Loom always does.
    eager_input_streaming: bool | None = None


class ToolChoiceAuto(Struct, tag_field="type", tag="auto", forbid_unknown_fields=True, omit_defaults=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(Struct, tag_field="type", tag="any", forbid_unknown_fields=True, omit_defaults=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(Struct, tag_field="type", tag="tool", forbid_unknown_fields=True, omit_defaults=True):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(Struct, tag_field="type", tag="none", forbid_unknown_fields=True):
    pass


ToolChoiceParam = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class JSONOutputFormat(Struct, tag_field="type", tag="json_schema", forbid_unknown_fields=True):
    schema: dict[str, Any]


class OutputConfigParam(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Structured output (``format``: the answer's text follows a JSON schema) and ``effort``
    (a reasoning effort, served only where a provider can)."""

    format: JSONOutputFormat | None = None
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


class MetadataParam(Struct, forbid_unknown_fields=True, omit_defaults=True):
    user_id: str | None = None


# --- requests ------------------------------------------------------------------------------------


class CountTokensRequest(Request):
    """``POST /v1/messages/count_tokens``: what a message request would put before the model."""

    model: str
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlockParam] | None = None
    tools: Annotated[list[ToolParam], Meta(max_length=128)] | None = None
    tool_choice: ToolChoiceParam | None = None
    #: Extended thinking: ``disabled`` and ``adaptive`` pass (the model decides, and Loom's do
    #: not think on request); ``enabled`` is refused by name.
    thinking: dict[str, Any] | None = None
    output_config: OutputConfigParam | None = None
    #: Automatic caching's breakpoint: accepted, ignored (Loom's prompt cache needs none).
    cache_control: CacheControl | None = None


class CreateMessageRequest(Request):
    """``POST /v1/messages``. ``max_tokens`` is required, as Anthropic has it."""

    model: str
    max_tokens: Annotated[int, Meta(ge=1)]
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlockParam] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    tools: Annotated[list[ToolParam], Meta(max_length=128)] | None = None
    tool_choice: ToolChoiceParam | None = None
    metadata: MetadataParam | None = None
    thinking: dict[str, Any] | None = None
    output_config: OutputConfigParam | None = None
    cache_control: CacheControl | None = None
    #: Bookkeeping: accepted, changes nothing ("auto", "standard_only").
    service_tier: str | None = None


# --- the answer ----------------------------------------------------------------------------------


class TextBlock(Struct, tag_field="type", tag="text"):
    text: str
    citations: list[dict[str, Any]] | None = None


class ToolUseBlock(Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextBlock | ToolUseBlock

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class MessageUsage(Struct):
    """Token counts. ``input_tokens`` are the prompt tokens the model evaluated; those a prompt
    cache served are ``cache_read_input_tokens`` (Anthropic counts them apart)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = 0
    cache_read_input_tokens: int | None = 0


class Message(Struct):
    id: str
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: MessageUsage
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class MessageTokensCount(Struct):
    input_tokens: int


# --- stream events -------------------------------------------------------------------------------


class StreamEvent(Struct, tag_field="type"):
    """Base of the server-sent events of a streamed message; the SSE ``event`` is the tag."""


class MessageStart(StreamEvent, tag="message_start"):
    message: Message


class ContentBlockStart(StreamEvent, tag="content_block_start"):
    index: int
    content_block: ContentBlock


class TextDelta(Struct, tag_field="type", tag="text_delta"):
    text: str


class InputJSONDelta(Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class ContentBlockDelta(StreamEvent, tag="content_block_delta"):
    index: int
    delta: TextDelta | InputJSONDelta


class ContentBlockStop(StreamEvent, tag="content_block_stop"):
    index: int


class Ping(StreamEvent, tag="ping"):
    pass


class MessageDeltaBody(Struct):
    stop_reason: StopReason | None
    stop_sequence: str | None


class MessageDeltaUsage(Struct):
    """The final counts; ``input_tokens`` and the cache counts are known only at the end, so they
    come here too (the ``anthropic`` package's accumulator takes them from this event)."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDelta(StreamEvent, tag="message_delta"):
    delta: MessageDeltaBody
    usage: MessageDeltaUsage


class MessageStop(StreamEvent, tag="message_stop"):
    pass


# --- errors --------------------------------------------------------------------------------------


ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
]


class AnthropicError(Struct):
    type: ErrorType
    message: str


class AnthropicErrorResponse(Struct):
    """``{"type": "error", "error": {"type": ..., "message": ...}}``: an error answer, and the
    ``data`` of an ``error`` event in a stream."""

    error: AnthropicError
    type: Literal["error"] = "error"


class ErrorEvent(StreamEvent, tag="error"):
    error: AnthropicError
