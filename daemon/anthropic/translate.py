"""A Messages API request as a chat request: the one translation onto the provider calls.

``system`` becomes a system message; each message's blocks become chat messages: ``text`` and
``image`` blocks a user message's parts (an image's base64 source a data URI, its URL source
fetched by the daemon like any chat image URL), an assistant's ``tool_use`` blocks its tool
calls, and a user's ``tool_result`` blocks tool messages, put before the rest of that user
message (images inside a result go into the user message after them: a tool message holds text).
``tools`` become functions, ``tool_choice`` its chat form (``any`` is ``required``, ``tool`` a
named choice, so llama.cpp constrains a forced call by grammar exactly as for Chat Completions),
``stop_sequences`` the stop strings, ``output_config.format`` a JSON-schema response format
(grammar-constrained on llama.cpp), ``output_config.effort`` the reasoning effort,
``metadata.user_id`` the user. What chat cannot say is
checked here, each a 400 naming the field in Anthropic's terms.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from loom.sdk.anthropic import (
    Base64ImageSource,
    CountTokensRequest,
    CreateMessageRequest,
    ImageBlockParam,
    MessageParam,
    TextBlockParam,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceParam,
    ToolChoiceTool,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from loom.sdk.errors import InvalidRequest
from loom.sdk.types import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    FunctionTool,
    ImagePart,
    ImageURL,
    JSONSchemaFormat,
    JSONSchemaSpec,
    NamedFunction,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
)

from ..chat.param_policy import unsupported
from ..chat.rules import check_parameters_schema
from ..media import check_image

#: Chat parameter -> the Messages API's name for it (errors, ``x-loom-ignored``).
_NAMES = {
    "max_completion_tokens": "max_tokens",
    "stop": "stop_sequences",
    "user": "metadata.user_id",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "response_format": "output_config.format",
    "reasoning_effort": "output_config.effort",
}


def shown(chat_name: str) -> str:
    """The Messages API's name for a chat parameter."""
    return _NAMES.get(chat_name, chat_name)


@dataclass
class Translated:
    chat: ChatCompletionRequest
    #: Parameters left out under ``compat = "lenient"`` (Messages names).
    ignored: list[str] = field(default_factory=list)
    #: Chat (message, part) -> the Messages path of the image block it came from.
    images: dict[tuple[int, int], str] = field(default_factory=dict)

    def image_param(self, message: int, part: int) -> str:
        return self.images.get((message, part), "messages")


def to_chat(req: CreateMessageRequest | CountTokensRequest, compat: str) -> Translated:
    """``req`` as a chat request (a count_tokens request as one generating a single token)."""
    ignored = _thinking(req, compat)
    if not req.messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    last = req.messages[-1]
    if last.role == "assistant":
        raise InvalidRequest(
            f"messages[{len(req.messages) - 1}]: the last message is an assistant message; continuing a "
            "prefilled answer is not supported by Loom, end with a user message",
            param=f"messages[{len(req.messages) - 1}].role",
        )
    images: dict[tuple[int, int], str] = {}
    messages: list[ChatMessage] = []
    if req.system:
        system = req.system if isinstance(req.system, str) else "\n\n".join(b.text for b in req.system)
        messages.append(SystemMessage(content=system))
    _messages(req.messages, messages, images)
    tools = _tools(req)
    choice, parallel = _tool_choice(req.tool_choice, tools)
    output = req.output_config
    response_format = None
    if output is not None and output.format is not None:
        spec = JSONSchemaSpec(name="output", schema=output.format.schema, strict=True)
        response_format = JSONSchemaFormat(json_schema=spec)
    effort = output.effort if output is not None else None
    if isinstance(req, CreateMessageRequest):
        chat = ChatCompletionRequest(
            model=req.model,
            messages=messages,
            stream=req.stream,
            max_completion_tokens=req.max_tokens,
            stop=list(req.stop_sequences) if req.stop_sequences else None,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            tools=tools or None,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            response_format=response_format,
            reasoning_effort=effort,
            user=req.metadata.user_id if req.metadata is not None else None,
        )
    else:
        chat = ChatCompletionRequest(
            model=req.model,
            messages=messages,
            max_completion_tokens=1,
            tools=tools or None,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            response_format=response_format,
            reasoning_effort=effort,
        )
    return Translated(chat, ignored, images)


def _thinking(req: CreateMessageRequest | CountTokensRequest, compat: str) -> list[str]:
    """Extended thinking: ``disabled`` asks for nothing; anything else no Loom model does."""
    if req.thinking is None or req.thinking.get("type") in ("disabled", "adaptive"):
        return []
    if compat != "lenient":
        raise unsupported("thinking", None)
    return ["thinking"]


def _tools(req: CreateMessageRequest | CountTokensRequest) -> list[FunctionTool]:
    tools: list[FunctionTool] = []
    names: set[str] = set()
    for i, tool in enumerate(req.tools or []):
        if tool.name in names:
            raise InvalidRequest(
                f"tools[{i}].name: two tools are named '{tool.name}'; tool names must be unique",
                param=f"tools[{i}].name",
            )
        names.add(tool.name)
        check_parameters_schema(tool.input_schema, f"tools[{i}].input_schema")
        tools.append(
            FunctionTool(
                function=FunctionDefinition(
                    name=tool.name, description=tool.description, parameters=tool.input_schema, strict=tool.strict
                )
            )
        )
    return tools


def _tool_choice(choice: ToolChoiceParam | None, tools: list[FunctionTool]) -> tuple[ToolChoice | None, bool | None]:
    """The chat ``tool_choice`` and ``parallel_tool_calls`` for Anthropic's ``tool_choice``."""
    if choice is None or (not tools and isinstance(choice, (ToolChoiceAuto, ToolChoiceNone))):
        return None, None  # clients send auto (or none) with no tools; it asks for nothing
    if not tools:
        raise InvalidRequest(
            f"tool_choice: '{type(choice).__struct_config__.tag}' needs tools, and none are given", param="tool_choice"
        )
    parallel = False if getattr(choice, "disable_parallel_tool_use", None) else None
    if isinstance(choice, ToolChoiceNone):
        return "none", None
    if isinstance(choice, ToolChoiceAuto):
        return "auto", parallel
    if isinstance(choice, ToolChoiceAny):
        return "required", parallel
    assert isinstance(choice, ToolChoiceTool)
    names = [t.function.name for t in tools]
    if choice.name not in names:
        raise InvalidRequest(
            f"tool_choice.name: '{choice.name}' is not one of the tools ({', '.join(names)})",
            param="tool_choice.name",
        )
    return NamedToolChoice(function=NamedFunction(name=choice.name)), parallel


def _messages(params: list[MessageParam], out: list[ChatMessage], images: dict[tuple[int, int], str]) -> None:
    """Append the chat messages of ``params`` to ``out``, noting where each image came from."""
    calls: set[str] = set()
    for i, m in enumerate(params):
        where = f"messages[{i}]"
        if isinstance(m.content, str):
            out.append(UserMessage(content=m.content) if m.role == "user" else AssistantMessage(content=m.content))
            continue
        if m.role == "assistant":
            out.append(_assistant(m.content, where, calls))
            continue
        results: list[ChatMessage] = []
        parts: list[ContentPart] = []
        spots: list[str] = []  # the Messages path of each image part, in order
        for j, block in enumerate(m.content):
            at = f"{where}.content[{j}]"
            if isinstance(block, TextBlockParam):
                parts.append(TextPart(text=block.text))
            elif isinstance(block, ImageBlockParam):
                parts.append(_image(block, at))
                spots.append(at)
            elif isinstance(block, ToolResultBlockParam):
                if block.tool_use_id not in calls:
                    raise InvalidRequest(
                        f"{at}.tool_use_id: this tool_result answers '{block.tool_use_id}', but no earlier "
                        "assistant message has a tool_use block with that id",
                        param=f"{at}.tool_use_id",
                    )
                text, extra = _result(block, at)
                results.append(ToolMessage(content=text, tool_call_id=block.tool_use_id))
                for k, image in extra:
                    parts.append(image)
                    spots.append(f"{at}.content[{k}]")
            else:
                raise InvalidRequest(
                    f"{at}.type: a user message takes text, image and tool_result blocks, not tool_use",
                    param=f"{at}.type",
                )
        out.extend(results)
        if parts or not results:
            index = len(out)
            images.update(
                {(index, j): f"{spots.pop(0)}.source" for j, p in enumerate(parts) if isinstance(p, ImagePart)}
            )
            out.append(UserMessage(content=parts))


def _assistant(blocks: list, where: str, calls: set[str]) -> AssistantMessage:
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        if isinstance(block, TextBlockParam):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlockParam):
            if block.id in calls:
                raise InvalidRequest(f"{at}.id: the tool_use id '{block.id}' is used twice", param=f"{at}.id")
            calls.add(block.id)
            arguments = json.dumps(block.input, ensure_ascii=False)
            tool_calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
        else:
            raise InvalidRequest(f"{at}.type: an assistant message takes text and tool_use blocks", param=f"{at}.type")
    text = "".join(texts)
    return AssistantMessage(content=text if text or not tool_calls else None, tool_calls=tool_calls or None)


def _image(block: ImageBlockParam, at: str) -> ImagePart:
    source = block.source
    if isinstance(source, Base64ImageSource):
        try:
            data = base64.b64decode(source.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{at}.source.data: not valid base64", param=f"{at}.source.data") from None
        check_image(data, f"{at}.source.data")
        return ImagePart(image_url=ImageURL(url=f"data:{source.media_type};base64,{source.data}"))
    return ImagePart(image_url=ImageURL(url=source.url))


def _result(block: ToolResultBlockParam, at: str) -> tuple[str, list[tuple[int, ImagePart]]]:
    """A tool result's text (``Error: `` first when ``is_error``) and its images (block index, part)."""
    content = block.content
    images: list[tuple[int, ImagePart]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for k, part in enumerate(content):
            if isinstance(part, TextBlockParam):
                texts.append(part.text)
            else:
                images.append((k, _image(part, f"{at}.content[{k}]")))
        text = "\n".join(texts)
    if block.is_error:
        text = f"Error: {text}"
    return text, images
