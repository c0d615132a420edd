"""Ollama's ``options``, ``format`` and ``keep_alive`` in Loom's terms.

``options`` map to Chat Completions' parameters (``num_predict`` is ``max_tokens``; the sampling
knobs keep their names), so the parameter policy then treats them as it treats any chat request.
``num_ctx`` cannot resize a loaded model's context (``n_ctx`` in the model's config does): it is
accepted up to the context the model serves and refused above it. Ollama's load-time options
(``num_gpu``, ``num_thread``, ...) are the model's config in Loom, and the samplers Loom does not
have (``mirostat``, ``typical_p``, ...) are refused by name, as is an option Ollama does not define.
"""

from __future__ import annotations

import math
import re
from typing import Any

from loom.sdk.errors import InvalidRequest, UnsupportedParameter
from loom.sdk.types import JSONObjectFormat, JSONSchemaFormat, JSONSchemaSpec

from .wire import Format, KeepAlive

#: Ollama option -> the chat request's field.
SAMPLING = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
}
#: Set per model in Loom's config (``[[models]] options``), not per request.
LOAD_TIME = frozenset(
    {
        "numa",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "embedding_only",
        "num_thread",
    }
)
#: Samplers Ollama has and Loom's providers do not.
NOT_SERVED = frozenset(
    {"num_keep", "tfs_z", "typical_p", "repeat_last_n", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline"}
)


def chat_options(options: dict[str, Any] | None, context: int | None) -> dict[str, Any]:
    """The chat request's fields for ``options``; ``context`` is what the model serves per request."""
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        param = f"options.{name}"
        if value is None:
            continue
        if name == "num_ctx":
            _check_context(value, context)
        elif name in SAMPLING:
            if name == "num_predict":
                if not isinstance(value, int) or isinstance(value, bool) or value == 0:
                    raise InvalidRequest(
                        f"{param} must be a positive integer (or -1 for no limit), got {value!r}", param=param
                    )
                if value < 0:
                    continue  # -1 (no limit) and -2 (fill the context): the context is the limit
            if name == "stop" and isinstance(value, str):
                value = [value]
            out[SAMPLING[name]] = value
        elif name in LOAD_TIME:
            raise UnsupportedParameter(
                f"{param} is a load-time option: Loom sets it per model, in the [[models]] options of its "
                "config, not per request",
                param=param,
            )
        elif name in NOT_SERVED:
            raise UnsupportedParameter(f"{param} is not supported by Loom's samplers", param=param)
        else:
            raise UnsupportedParameter(f"unknown option {name!r}", param=param)
    return out


def _check_context(value: Any, context: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"options.num_ctx must be a positive integer, got {value!r}", param="options.num_ctx")
    if context is not None and value > context:
        raise UnsupportedParameter(
            f"options.num_ctx={value} is more than this model's context of {context} tokens; Loom sets a "
            "model's context in its config ([[models]] options n_ctx), not per request",
            param="options.num_ctx",
        )


def response_format(fmt: Format) -> JSONObjectFormat | JSONSchemaFormat | None:
    """``format``: "json" is any JSON object, a schema is that schema, "" or null is text."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return JSONObjectFormat()
    if isinstance(fmt, dict):
        return JSONSchemaFormat(json_schema=JSONSchemaSpec(name="format", schema=fmt, strict=True))
    raise InvalidRequest(f'format must be "json" or a JSON schema, got {fmt!r}', param="format")


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def keep_alive(value: KeepAlive) -> float | None:
    """Seconds to keep the model after this request (``math.inf``: for ever, 0: unload now);
    None when the request leaves it to the model's config. A number is seconds; a string is a
    Go duration ("5m", "1h30m") or a number of seconds; a negative value is for ever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"keep_alive must be a duration, got {value!r}", param="keep_alive")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)
        except ValueError:
            parts = _PART.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise InvalidRequest(
                    f'keep_alive must be a number of seconds or a duration such as "5m" or "1h", got {value!r}',
                    param="keep_alive",
                ) from None
            seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    if math.isnan(seconds):
        raise InvalidRequest("keep_alive must be a number", param="keep_alive")
    return math.inf if seconds < 0 else seconds
