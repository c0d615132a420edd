"""Ollama's native API as Loom sees it: request bodies from Loom's wire types, errors to Loom's.

Pure functions, no I/O: ``/api/chat`` and ``/api/generate`` bodies, image parts as the base64
strings Ollama takes, and the table from Ollama's error answers to Loom's error classes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from loom.sdk import (
    CapabilityNotSupported,
    InvalidRequest,
    LoomError,
    OutOfMemory,
    ProviderError,
    RateLimited,
    Unavailable,
    UnsupportedParameter,
)
from loom.sdk.types import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    JSONObjectFormat,
    JSONSchemaFormat,
    ResponseFormat,
)

from .options import OllamaOptions

#: Magic numbers of the image formats Ollama's vision models read.
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def sampling(request: ChatCompletionRequest | CompletionRequest, options: OllamaOptions, limit: int | None) -> dict:
    """Ollama's ``options`` object: OpenAI's sampling parameters under Ollama's names."""
    out: dict[str, Any] = {}
    for loom_name, ollama_name in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ):
        value = getattr(request, loom_name)
        if value is not None:
            out[ollama_name] = value
    if limit is not None:
        out["num_predict"] = limit
    if request.stop_list():
        out["stop"] = request.stop_list()
    if options.num_ctx is not None:
        out["num_ctx"] = options.num_ctx
    return out


def _common(options: OllamaOptions) -> dict[str, Any]:
    body: dict[str, Any] = {"model": options.model, "stream": True}
    if options.keep_alive is not None:
        body["keep_alive"] = options.keep_alive
    return body


def response_format(fmt: ResponseFormat | None) -> str | dict | None:
    """``format``: "json" for a JSON object, the schema itself for a JSON schema."""
    if isinstance(fmt, JSONObjectFormat):
        return "json"
    if isinstance(fmt, JSONSchemaFormat):
        return fmt.json_schema.schema or "json"
    return None


def image_base64(url: str) -> str:
    """An image part's data URI as the bare base64 Ollama takes; InvalidRequest if it is no image."""
    if not url.startswith("data:"):
        raise UnsupportedParameter("ollama takes images inline: send a data: URI (base64), not a URL", param="messages")
    header, comma, payload = url.partition(",")
    if not comma or ";base64" not in header:
        raise InvalidRequest("image data URI must be base64-encoded (data:image/png;base64,...)", param="messages")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image data URI is not valid base64", param="messages") from None
    if not (data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        raise InvalidRequest("image data URI does not hold a PNG, JPEG, GIF, WebP or BMP image", param="messages")
    return payload


def message(m: ChatMessage) -> dict[str, Any]:
    # Ollama's chat templates know system/user/assistant; OpenAI's "developer" is the system role.
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
    images = [image_base64(url) for url in m.images()]
    if images:
        out["images"] = images
    return out


def chat_body(request: ChatCompletionRequest, options: OllamaOptions) -> dict[str, Any]:
    body = _common(options)
    body["messages"] = [message(m) for m in request.messages]
    body["options"] = sampling(request, options, request.token_limit())
    fmt = response_format(request.response_format)
    if fmt is not None:
        body["format"] = fmt
    return body


def generate_body(prompt: str, request: CompletionRequest, options: OllamaOptions) -> dict[str, Any]:
    # raw: no chat template, the model continues the text as a completion should.
    body = _common(options)
    body.update(prompt=prompt, raw=True, options=sampling(request, options, request.max_tokens))
    return body


def finish_reason(done: dict[str, Any]) -> str:
    return "length" if done.get("done_reason") == "length" else "stop"


def error_for(status: int, message: str, model: str) -> LoomError:
    """The Loom error for an Ollama error answer (``{"error": message}`` with ``status``)."""
    text = f"ollama: {message}"
    lowered = message.lower()
    if status == 404 or ("not found" in lowered and "model" in lowered):
        return ProviderError(f"ollama has no model {model!r} ({message}); run `ollama pull {model}`")
    if "does not support" in lowered:
        return CapabilityNotSupported(text, param="model")
    if status == 429:
        return RateLimited(text)
    if "memory" in lowered:
        return OutOfMemory(text)
    if status in (400, 422):
        return InvalidRequest(text)
    if status == 503:
        return Unavailable(text)
    return ProviderError(text)
