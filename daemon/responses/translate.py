"""A Responses API request as a chat request, and back.

The request's input items (after the stored conversation of ``previous_response_id``) become
chat messages: a message item one message, consecutive ``function_call`` items one assistant
message with tool calls, a ``function_call_output`` a tool message. Tools, tool_choice, text
format, limits and the bookkeeping parameters map to their chat names (the policy table in
:mod:`loom.sdk.params` gives both names). What the chat request cannot say is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from loom.sdk import params
from loom.sdk.errors import InvalidRequest
from loom.sdk.responses import (
    CreateResponseRequest,
    FormatJSONObject,
    FormatJSONSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputItem,
    InputText,
    ItemReference,
    MessageItem,
    OutputTextIn,
    RefusalIn,
    ToolChoiceAllowed,
    ToolChoiceFunction,
    decode_item,
)
from loom.sdk.types import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    DeveloperMessage,
    FunctionCall,
    FunctionDefinition,
    FunctionTool,
    ImagePart,
    ImageURL,
    JSONObjectFormat,
    JSONSchemaFormat,
    JSONSchemaSpec,
    NamedFunction,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)

from ..chat.param_policy import unsupported

LOGPROBS_INCLUDE = "message.output_text.logprobs"


def shown(chat_name: str) -> str:
    """The Responses API's name for a chat parameter (for errors and ``x-loom-ignored``)."""
    if chat_name == "logprobs":
        return "include"
    row = params.BY_CHAT.get(chat_name)
    return (row.responses if row is not None else None) or chat_name


@dataclass
class Translated:
    chat: ChatCompletionRequest
    #: The conversation before the answer, without the instructions (what is stored).
    conversation: list[ChatMessage]
    #: Chat message index -> the ``input`` item it came from (for error params).
    origin: dict[int, int] = field(default_factory=dict)
    #: Responses-only parameters left out under ``compat = "lenient"``.
    ignored: list[str] = field(default_factory=list)
    #: The request's own input items, decoded (what ``GET .../input_items`` lists).
    items: list[InputItem] = field(default_factory=list)

    def image_param(self, message: int, part: int) -> str:
        item = self.origin.get(message)
        return f"input[{item}].content[{part}].image_url" if item is not None else "input"


def to_chat(req: CreateResponseRequest, history: list[ChatMessage], compat: str) -> Translated:
    ignored = _responses_only(req, compat)
    items = decode_items(req.input)
    prefix: list[ChatMessage] = [DeveloperMessage(content=req.instructions)] if req.instructions else []
    conversation, origin = _messages(items, list(history))
    origin = {i + len(prefix): item for i, item in origin.items()}
    tools = [
        FunctionTool(
            function=FunctionDefinition(
                name=t.name, description=t.description, parameters=t.parameters, strict=t.strict
            )
        )
        for t in req.tools or []
    ]
    tool_choice = req.tool_choice
    if isinstance(tool_choice, ToolChoiceAllowed):
        allowed = {t.name for t in tool_choice.tools}
        unknown = sorted(allowed - {t.function.name for t in tools})
        if unknown:
            raise InvalidRequest(
                f"tool_choice.tools names functions that are not in tools: {', '.join(unknown)}",
                param="tool_choice.tools",
            )
        tools = [t for t in tools if t.function.name in allowed]
        tool_choice = tool_choice.mode
    chat_choice = (
        NamedToolChoice(function=NamedFunction(name=tool_choice.name))
        if isinstance(tool_choice, ToolChoiceFunction)
        else tool_choice
    )
    parallel = req.parallel_tool_calls
    if not tools and chat_choice in ("auto", "none"):
        # Clients resend the defaults a response echoed; without tools they ask for nothing.
        chat_choice, parallel = None, None
    elif not tools:
        parallel = None
    fmt = req.text.format if req.text is not None else None
    response_format: JSONObjectFormat | JSONSchemaFormat | None = None
    if isinstance(fmt, FormatJSONObject):
        response_format = JSONObjectFormat()
    elif isinstance(fmt, FormatJSONSchema):
        spec = JSONSchemaSpec(name=fmt.name, schema=fmt.schema, description=fmt.description, strict=fmt.strict)
        response_format = JSONSchemaFormat(json_schema=spec)
    logprobs = LOGPROBS_INCLUDE in (req.include or []) or bool(req.top_logprobs)
    chat = ChatCompletionRequest(
        model=req.model,
        messages=prefix + conversation,
        stream=req.stream,
        temperature=req.temperature,
        top_p=req.top_p,
        max_completion_tokens=req.max_output_tokens,
        response_format=response_format,
        tools=tools or None,
        tool_choice=chat_choice,
        parallel_tool_calls=parallel,
        logprobs=True if logprobs else None,
        top_logprobs=req.top_logprobs if logprobs else None,
        reasoning_effort=req.reasoning.effort if req.reasoning is not None else None,
        verbosity=req.text.verbosity if req.text is not None else None,
        user=req.user,
        metadata=req.metadata,
        store=req.store,
        service_tier=req.service_tier,
        prompt_cache_key=req.prompt_cache_key,
        prompt_cache_retention=req.prompt_cache_retention,
        safety_identifier=req.safety_identifier,
    )
    return Translated(chat, conversation, origin, ignored, items)


def _responses_only(req: CreateResponseRequest, compat: str) -> list[str]:
    """The optional parameters only the Responses API has; no provider honours them."""
    optional = [p.responses for p in params.TABLE if p.chat is None and p.kind is params.Kind.OPTIONAL]
    asked = [name for name in optional if name and params.BY_RESPONSES[name].asks(getattr(req, name, None))]
    if asked and compat != "lenient":
        raise unsupported(asked[0], None)
    return asked


def decode_items(value: str | list[dict]) -> list[InputItem]:
    if isinstance(value, str):
        return [MessageItem(role="user", content=value)]
    items = []
    for i, raw in enumerate(value):
        try:
            items.append(decode_item(raw))
        except msgspec.ValidationError as e:
            message = str(e)
            path = message.rsplit(" - at `$", 1)[1].rstrip("`") if " - at `$" in message else ""
            reason = message.rsplit(" - at `", 1)[0]
            raise InvalidRequest(f"Invalid input item {i}: {reason}", param=f"input[{i}]{path}") from None
    return items


def _messages(items: list[InputItem], history: list[ChatMessage]) -> tuple[list[ChatMessage], dict[int, int]]:
    """(history + the items as chat messages, chat index -> item index for the new ones)."""
    messages = history
    origin: dict[int, int] = {}
    calls = {c.id for m in history if isinstance(m, AssistantMessage) for c in m.tool_calls or ()}
    fresh: set[int] = set()  # indices of assistant messages made here (function calls may join them)
    for i, item in enumerate(items):
        if isinstance(item, ItemReference):
            raise InvalidRequest(
                "item_reference items are not supported: send the item itself, or previous_response_id",
                param=f"input[{i}]",
            )
        if isinstance(item, FunctionCallItem):
            call = ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments))
            if item.call_id in calls:
                raise InvalidRequest(f"the call id '{item.call_id}' is used twice", param=f"input[{i}].call_id")
            calls.add(item.call_id)
            last = messages[-1] if messages else None
            if isinstance(last, AssistantMessage) and len(messages) - 1 in fresh:
                messages[-1] = msgspec.structs.replace(last, tool_calls=[*(last.tool_calls or []), call])
                continue
            messages.append(AssistantMessage(content=None, tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in calls:
                raise InvalidRequest(
                    f"this function_call_output answers the call '{item.call_id}', but no function_call "
                    "before it (in input or the previous response) has that call_id",
                    param=f"input[{i}].call_id",
                )
            messages.append(ToolMessage(content=_tool_output(item, i), tool_call_id=item.call_id))
        else:
            messages.append(_message(item, i))
        origin[len(messages) - 1] = i
        if isinstance(messages[-1], AssistantMessage):
            fresh.add(len(messages) - 1)
    return messages, origin


def _tool_output(item: FunctionCallOutputItem, i: int) -> str | list[TextPart]:
    if isinstance(item.output, str):
        return item.output
    parts = []
    for j, part in enumerate(item.output):
        if not isinstance(part, InputText):
            raise InvalidRequest("function_call_output takes text only", param=f"input[{i}].output[{j}]")
        parts.append(TextPart(text=part.text))
    return parts


def _message(item: MessageItem, i: int) -> ChatMessage:
    content = item.content
    if item.role == "assistant":
        if isinstance(content, str):
            return AssistantMessage(content=content)
        texts, refusals = [], []
        for j, part in enumerate(content):
            if isinstance(part, (OutputTextIn, InputText)):
                texts.append(part.text)
            elif isinstance(part, RefusalIn):
                refusals.append(part.refusal)
            else:
                raise InvalidRequest("an assistant message takes text only", param=f"input[{i}].content[{j}]")
        return AssistantMessage(
            content="".join(texts) if texts or not refusals else None, refusal="".join(refusals) or None
        )
    if isinstance(content, str):
        parts: str | list[ContentPart] = content
    else:
        parts = []
        for j, part in enumerate(content):
            if isinstance(part, InputText):
                parts.append(TextPart(text=part.text))
            elif isinstance(part, InputImage) and item.role == "user":
                if part.image_url is None:
                    raise InvalidRequest(
                        "images by file_id are not supported: send image_url (an http(s) URL or a data URI)",
                        param=f"input[{i}].content[{j}].file_id",
                    )
                detail = "high" if part.detail == "original" else part.detail
                parts.append(ImagePart(image_url=ImageURL(url=part.image_url, detail=detail)))
            else:
                raise InvalidRequest(
                    f"a {item.role} message takes {'input_text and input_image' if item.role == 'user' else 'input_text'} parts",
                    param=f"input[{i}].content[{j}].type",
                )
    if item.role == "user":
        return UserMessage(content=parts)
    text: str | list[TextPart] = parts if isinstance(parts, str) else [p for p in parts if isinstance(p, TextPart)]
    return SystemMessage(content=text) if item.role == "system" else DeveloperMessage(content=text)
