"""Ollama's chat and generate requests as Loom's chat and completion calls.

``/api/chat`` is a Chat Completions request: messages (``images`` as base64 become image parts,
``tool_calls`` with object arguments become tool calls with ids, a ``tool`` message answers the
call it names by ``tool_call_id``, else the earliest unanswered call of its ``tool_name``, else the
earliest unanswered one), ``tools`` as they are (Ollama's are OpenAI's), ``format`` as
``response_format``, ``options`` as the sampling parameters (:mod:`.options`).

``/api/generate`` is the same chat with ``system`` and ``prompt`` (and ``images``) as its
messages, as Ollama renders a prompt through the model's template; with ``raw`` it is a completion
of the prompt as written, and with ``suffix`` a completion of the model's fill-in-the-middle
prompt (its prefix, suffix and middle tokens around the prompt and suffix), refused where the
model's vocabulary has no such tokens. ``think`` is refused by name when it asks for thinking (no
Loom provider separates a model's reasoning), ``context`` and ``template`` too (Loom keeps no
token context between calls and renders with the model's own template).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
from loom.sdk.errors import InvalidRequest, UnsupportedParameter
from loom.sdk.types import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ContentPart,
    FunctionCall,
    ImagePart,
    ImageURL,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)

from ..chat.intake import data_uri
from ..media import check_image
from . import options as opts
from .wire import OllamaChatRequest, OllamaGenerateRequest, OllamaMessage


@dataclass
class Fields:
    """What chat and generate share: the sampling fields, format and log probabilities."""

    values: dict[str, Any] = field(default_factory=dict)
    #: chat field -> the Ollama name, for errors about a value.
    names: dict[str, str] = field(default_factory=dict)


def common(req: OllamaChatRequest | OllamaGenerateRequest, model: str, context: int | None) -> Fields:
    refuse_think(req.think, model)
    out = Fields()
    sampling = opts.chat_options(req.options, context)
    for name, value in sampling.items():
        out.values[name] = value
        out.names[name] = "options." + next(k for k, v in opts.SAMPLING.items() if v == name)
    fmt = opts.response_format(req.format)
    if fmt is not None:
        out.values["response_format"] = fmt
    if req.logprobs:
        out.values["logprobs"] = True
        if req.top_logprobs:
            out.values["top_logprobs"] = req.top_logprobs
            out.names["top_logprobs"] = "top_logprobs"
    elif req.top_logprobs:
        raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs")
    return out


def shown(chat_name: str) -> str:
    """Ollama's name for a chat request's field (in errors of the parameter policy)."""
    for option, field_name in opts.SAMPLING.items():
        if field_name == chat_name:
            return f"options.{option}"
    return {"response_format": "format"}.get(chat_name, chat_name)


def refuse_think(think: bool | str | None, model: str) -> None:
    if think is None or think is False or think in ("", "false"):
        return
    raise UnsupportedParameter(
        f"think: model '{model}' does not support thinking (Loom serves no model's reasoning apart from its answer)",
        param="think",
    )


def build(values: dict[str, Any], names: dict[str, str]) -> ChatCompletionRequest:
    """The chat request, its values checked as a decoded body's would be; a bad one is a 400
    naming Ollama's field."""
    try:
        return msgspec.convert(values, ChatCompletionRequest)
    except msgspec.ValidationError as e:
        message = str(e)
        path = message.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in message else ""
        top = path.split("[", 1)[0].split(".", 1)[0]
        shown = names.get(top, path or None)
        raise InvalidRequest(f"Invalid {shown or 'request'}: {message.rsplit(' - at ', 1)[0]}", param=shown) from None


def chat(req: OllamaChatRequest, model: str, context: int | None) -> ChatCompletionRequest:
    """``/api/chat`` as a chat request to ``model`` (the Loom name the Ollama name resolved to)."""
    fields = common(req, model, context)
    values: dict[str, Any] = {
        "model": model,
        "messages": msgspec.to_builtins(messages(req.messages)),
        "stream": True,
        **msgspec.to_builtins(fields.values),
    }
    if req.tools:
        values["tools"] = msgspec.to_builtins(req.tools)
    return build(values, fields.names)


def messages(items: list[OllamaMessage]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    unanswered: list[tuple[str, str]] = []  # (call id, function name), oldest first
    count = 0
    for i, m in enumerate(items):
        content = m.content or ""
        if m.role != "user" and m.images:
            raise InvalidRequest("only user messages take images", param=f"messages[{i}].images")
        if m.role != "assistant" and m.tool_calls:
            raise InvalidRequest("only assistant messages make tool calls", param=f"messages[{i}].tool_calls")
        if m.role == "system":
            out.append(SystemMessage(content=content))
        elif m.role == "user":
            out.append(UserMessage(content=_user_content(content, m.images, f"messages[{i}].images")))
        elif m.role == "assistant":
            calls = []
            for call in m.tool_calls or []:
                count += 1
                call_id = call.id or f"call_{count}"
                calls.append(
                    ToolCall(id=call_id, function=FunctionCall(call.function.name, json.dumps(call.function.arguments)))
                )
                unanswered.append((call_id, call.function.name))
            out.append(AssistantMessage(content=content if content or not calls else None, tool_calls=calls or None))
        else:
            call_id = _answered(m, unanswered, i)
            out.append(ToolMessage(content=content, tool_call_id=call_id))
    return out


def _answered(m: OllamaMessage, unanswered: list[tuple[str, str]], i: int) -> str:
    """The id of the call a tool message answers (and it is no longer unanswered)."""
    if m.tool_call_id is not None:
        match = [c for c in unanswered if c[0] == m.tool_call_id]
    elif m.tool_name is not None:
        match = [c for c in unanswered if c[1] == m.tool_name]
    else:
        match = unanswered[:1]
    if not match:
        what = m.tool_call_id or m.tool_name
        raise InvalidRequest(
            f"this tool message answers {f'{what!r}' if what else 'a call'}, but no earlier assistant message "
            "has an unanswered tool call " + ("with that id" if m.tool_call_id else "of that name" if what else ""),
            param=f"messages[{i}]",
        )
    unanswered.remove(match[0])
    return match[0][0]


def _user_content(text: str, images: list[str] | None, param: str) -> str | list[ContentPart]:
    if not images:
        return text
    parts: list[ContentPart] = [TextPart(text=text)] if text else []
    for j, b64 in enumerate(images):
        data = image_bytes(b64, f"{param}[{j}]")
        parts.append(ImagePart(image_url=ImageURL(url=data_uri(data))))
    return parts


def image_bytes(b64: str, param: str) -> bytes:
    """An Ollama image: base64, or a data URI as some clients send."""
    if b64.startswith("data:"):
        b64 = b64.split(",", 1)[-1]
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("an image must be base64-encoded image data", param=param) from None
    check_image(data, param)
    return data


def generate_chat(req: OllamaGenerateRequest, model: str, context: int | None) -> ChatCompletionRequest:
    """``/api/generate`` through the model's chat template: ``system`` then ``prompt``."""
    refuse_generate_only(req)
    fields = common(req, model, context)
    chat_messages: list[ChatMessage] = [SystemMessage(content=req.system)] if req.system else []
    chat_messages.append(UserMessage(content=_user_content(req.prompt, req.images, "images")))
    values = {
        "model": model,
        "messages": msgspec.to_builtins(chat_messages),
        "stream": True,
        **msgspec.to_builtins(fields.values),
    }
    return build(values, fields.names)


#: What a completion request (``raw``, ``suffix``) carries of the sampling parameters.
_COMPLETION_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


def completion(
    req: OllamaGenerateRequest, model: str, context: int | None, fim: tuple[str, str, str] | None
) -> tuple[str, CompletionRequest]:
    """``/api/generate`` with ``raw`` or ``suffix``: the prompt as written (or the model's
    fill-in-the-middle prompt) and the completion request."""
    refuse_generate_only(req)
    if req.images:
        raise UnsupportedParameter("images are not supported with raw or suffix (a completion)", param="images")
    if req.system and req.raw:
        raise UnsupportedParameter("system is not used with raw: write it into the prompt", param="system")
    fields = common(req, model, context)
    for name in fields.values:
        if name not in _COMPLETION_FIELDS:
            shown = fields.names.get(name, "format" if name == "response_format" else name)
            raise UnsupportedParameter(
                f"{shown} is not supported with raw or suffix (a completion of the prompt as written)", param=shown
            )
    prompt = req.prompt
    if req.suffix is not None:
        if fim is None:
            raise UnsupportedParameter(
                f"suffix: model '{model}' has no fill-in-the-middle tokens, so it cannot insert (leave suffix out)",
                param="suffix",
            )
        pre, suf, mid = fim
        prompt = f"{pre}{prompt}{suf}{req.suffix}{mid}"
    values: dict[str, Any] = {"model": model, "prompt": prompt, "stream": True, **msgspec.to_builtins(fields.values)}
    # Ollama generates until the model stops or the context is full; a completion request needs
    # a number (the provider stops at the context's end either way).
    values.setdefault("max_tokens", context or 256)
    try:
        return prompt, msgspec.convert(values, CompletionRequest)
    except msgspec.ValidationError as e:
        raise InvalidRequest(f"Invalid request: {e}") from None


def refuse_generate_only(req: OllamaGenerateRequest) -> None:
    if req.context:
        raise UnsupportedParameter(
            "context is not supported: Loom keeps no token context between calls; send the conversation "
            "to /api/chat as messages",
            param="context",
        )
    if req.template:
        raise UnsupportedParameter(
            "template is not supported: Loom renders prompts with the model's own chat template (or use raw)",
            param="template",
        )
    for name in ("width", "height", "steps"):
        if getattr(req, name) is not None:
            raise UnsupportedParameter(
                f"{name}: image generation is served by POST /v1/images/generations, not /api/generate",
                param=name,
            )
