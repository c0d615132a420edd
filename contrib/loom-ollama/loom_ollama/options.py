"""The plugin's ``[plugins.ollama]`` section and each model's ``options`` table."""

from __future__ import annotations

import os
from typing import Annotated

from msgspec import Meta, Struct

DEFAULT_HOST = "http://127.0.0.1:11434"


class PluginOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[plugins.ollama]``: where Ollama listens, for every model that does not say."""

    #: Ollama's base URL; default ``$OLLAMA_HOST``, else http://127.0.0.1:11434.
    host: str | None = None
    #: Seconds to wait for Ollama (a cold model load can take a while).
    timeout: Annotated[float, Meta(gt=0)] = 300.0


class OllamaOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[models]].options`` for ``provider = "ollama"``."""

    #: The Ollama model name, as in ``ollama pull llama3.2:1b``.
    model: Annotated[str, Meta(min_length=1)]
    #: Overrides ``[plugins.ollama] host`` for this model.
    host: str | None = None
    #: How long Ollama keeps the model loaded after a request ("5m", "1h", 0, -1); None: Ollama's default.
    keep_alive: str | int | None = None
    #: Context window (Ollama's ``num_ctx``); None: the model's default.
    num_ctx: Annotated[int, Meta(ge=16)] | None = None
    #: Overrides ``[plugins.ollama] timeout`` for this model.
    timeout: Annotated[float, Meta(gt=0)] | None = None


def resolve_host(host: str | None) -> str:
    """A base URL from options, ``$OLLAMA_HOST`` or the default, read the way Ollama's own client
    reads it: without a scheme, ``http://`` and port 11434 are implied; ``0.0.0.0`` (a bind
    address) is reached over loopback."""
    host = (host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in host:
        authority, slash, path = host.partition("/")
        if ":" not in authority:
            authority += ":11434"
        host = f"http://{authority}{slash}{path}"
    scheme, _, rest = host.partition("://")
    if rest.startswith("0.0.0.0"):
        rest = "127.0.0.1" + rest[len("0.0.0.0") :]
    return f"{scheme}://{rest}"
