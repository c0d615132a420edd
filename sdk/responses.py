"""Wire types of the Responses API (``/v1/responses``): the request, its input items, the response
object with its output items, and the stream events.

Requests decode strictly like every Loom request. ``input`` items are a tagged union on ``type``;
OpenAI lets a message item leave ``type`` out, so items are decoded one by one after the request
(:func:`decode_item` fills in ``"message"``). Response structs list OpenAI's required fields
without defaults, so they are always sent (null when empty), as the published schema wants.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from .types import FunctionName, Metadata, Request, ServiceTier, Temperature, TopP

# --- input ----------------------------------------------------------------------------------------


class InputText(Struct, tag_field="type", tag="input_text", forbid_unknown_fields=True):
    text: str


class InputImage(Struct, tag_field="type", tag="input_image", forbid_unknown_fields=True, omit_defaults=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"


class OutputTextIn(Struct, tag_field="type", tag="output_text", forbid_unknown_fields=True, omit_defaults=True):
    """An earlier answer's text, sent back as input (agent frameworks resend their output items)."""

    text: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None


class RefusalIn(Struct, tag_field="type", tag="refusal", forbid_unknown_fields=True):
    refusal: str


ItemContent = InputText | InputImage | OutputTextIn | RefusalIn


class MessageItem(Struct, tag_field="type", tag="message", forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ItemContent]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallItem(Struct, tag_field="type", tag="function_call", forbid_unknown_fields=True, omit_defaults=True):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(
    Struct, tag_field="type", tag="function_call_output", forbid_unknown_fields=True, omit_defaults=True
):
    call_id: str
    output: str | list[InputText | InputImage]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ItemReference(Struct, tag_field="type", tag="item_reference", forbid_unknown_fields=True):
    id: str


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ItemReference


def decode_item(raw: dict[str, Any]) -> InputItem:
    """One ``input`` item; a message may leave out ``"type": "message"`` (OpenAI's easy form).
    Raises msgspec.ValidationError with the path inside the item."""
    if "type" not in raw and "role" in raw:
        raw = {"type": "message", **raw}
    return msgspec.convert(raw, InputItem, strict=True)


# --- tools and text format ------------------------------------------------------------------------


class FunctionToolSpec(Struct, tag_field="type", tag="function", forbid_unknown_fields=True):
    """A function tool as the Responses API writes it (flat: no ``function`` wrapper)."""

    name: FunctionName
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ToolChoiceFunction(Struct, tag_field="type", tag="function", forbid_unknown_fields=True):
    name: str


class AllowedTool(Struct, tag_field="type", tag="function", forbid_unknown_fields=True):
    name: str


class ToolChoiceAllowed(Struct, tag_field="type", tag="allowed_tools", forbid_unknown_fields=True):
    mode: Literal["auto", "required"]
    tools: list[AllowedTool]


ResponsesToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction | ToolChoiceAllowed


class FormatText(Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    pass


class FormatJSONObject(Struct, tag_field="type", tag="json_object", forbid_unknown_fields=True):
    pass


class FormatJSONSchema(Struct, tag_field="type", tag="json_schema", forbid_unknown_fields=True, omit_defaults=True):
    name: str
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


TextFormatConfig = FormatText | FormatJSONObject | FormatJSONSchema


class TextConfig(Struct, forbid_unknown_fields=True, omit_defaults=True):
    format: TextFormatConfig = field(default_factory=FormatText)
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Struct, forbid_unknown_fields=True, omit_defaults=True):
    effort: str | None = None


class ResponseStreamOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    include_obfuscation: bool | None = None


# --- request ---------------------------------------------------------------------------------------


class CreateResponseRequest(Request):
    """``POST /v1/responses``. Parameters follow the chat policy table (:mod:`loom.sdk.params`)."""

    model: str
    #: A string (one user message) or input items, decoded one by one (:func:`decode_item`).
    input: str | Annotated[list[dict[str, Any]], Meta(min_length=1)]
    instructions: str | None = None
    previous_response_id: str | None = None
    stream: bool = False
    stream_options: ResponseStreamOptions | None = None
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    tools: Annotated[list[FunctionToolSpec], Meta(max_length=128)] | None = None
    tool_choice: ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    # Bookkeeping.
    metadata: Metadata | None = None
    store: bool | None = None
    user: str | None = None
    service_tier: ServiceTier | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    include: list[str] | None = None
    # Output-changing, honoured by no provider (refused, or ignored when lenient).
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    max_tool_calls: Annotated[int, Meta(ge=1)] | None = None


# --- the response object ---------------------------------------------------------------------------


class TopLogprobOut(Struct):
    token: str
    logprob: float
    bytes: list[int]


class LogprobOut(Struct):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprobOut]


class OutputText(Struct, tag_field="type", tag="output_text"):
    text: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[LogprobOut] = field(default_factory=list)


class OutputMessage(Struct, tag_field="type", tag="message", kw_only=True):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText] = field(default_factory=list)


class FunctionCallOut(Struct, tag_field="type", tag="function_call", kw_only=True):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


OutputItem = OutputMessage | FunctionCallOut


class ResponseError(Struct):
    code: str
    message: str


class IncompleteDetails(Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(Struct):
    reasoning_tokens: int = 0


class ResponseUsage(Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: InputTokensDetails = field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = field(default_factory=OutputTokensDetails)


class ResponseObject(Struct, kw_only=True, omit_defaults=True):
    """The response object. Fields without defaults are always sent; optional ones when set."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "failed", "in_progress", "incomplete"]
    model: str
    output: list[OutputItem]
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    previous_response_id: str | None
    parallel_tool_calls: bool
    temperature: float | None
    top_p: float | None
    tool_choice: ResponsesToolChoice
    tools: list[FunctionToolSpec]
    text: TextConfig
    metadata: dict[str, str]
    store: bool
    truncation: Literal["auto", "disabled"]
    completed_at: int | None = None
    usage: ResponseUsage | None = None
    reasoning: ReasoningConfig | None = None
    top_logprobs: int | None = None
    user: str | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    background: bool | None = None


class ResponseItemList(Struct):
    """``GET /v1/responses/{id}/input_items``: the items a response was asked with, each with the id
    it was given (or the one Loom gave it) and its status."""

    data: list[dict[str, Any]]
    has_more: bool
    first_id: str | None
    last_id: str | None
    object: Literal["list"] = "list"


class ResponseDeleted(Struct):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


# --- stream events ------------------------------------------------------------------------------------


class Event(Struct, tag_field="type", kw_only=True):
    """Base of the stream events; ``sequence_number`` counts from 0 within one stream."""

    sequence_number: int


class ResponseCreated(Event, tag="response.created"):
    response: ResponseObject


class ResponseInProgress(Event, tag="response.in_progress"):
    response: ResponseObject


class ResponseCompleted(Event, tag="response.completed"):
    response: ResponseObject


class ResponseIncomplete(Event, tag="response.incomplete"):
    response: ResponseObject


class ResponseFailed(Event, tag="response.failed"):
    response: ResponseObject


class OutputItemAdded(Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class OutputItemDone(Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ContentPartAdded(Event, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ContentPartDone(Event, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class StreamLogprob(Struct):
    token: str
    logprob: float
    top_logprobs: list[dict[str, Any]] = field(default_factory=list)


class OutputTextDelta(Event, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[StreamLogprob] = field(default_factory=list)


class OutputTextDone(Event, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[StreamLogprob] = field(default_factory=list)


class FunctionCallArgumentsDelta(Event, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(Event, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(Event, tag="error"):
    code: str | None
    message: str
    param: str | None


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | ErrorEvent
)
