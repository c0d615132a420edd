"""What ``/api/tags``, ``/api/show`` and ``/api/ps`` say about a model.

A GGUF model's facts come from its file, read by llama.cpp (:mod:`loom.daemon.catalog.gguf`):
architecture, parameter count, quantisation, the key/value metadata, the chat template and the
fill-in-the-middle tokens. They are read once per file (keyed by path, size and modification
time) on a worker thread. Other models (torch, remote, mock) say what Loom knows of them: their
provider, capabilities and, where the weights are local, their size.

``digest`` identifies the weights (their location, size and modification time), not a hash of
their bytes, which for a large model would take minutes; a model and its aliases share it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.sdk.errors import LoomError
from loom.sdk.types import Capability

from ..catalog import gguf, listing
from ..catalog.detect import _file_type, disk_size, quant_label
from ..models import ModelEntry
from .wire import OllamaDetails

#: Metadata left out of ``model_info`` unless ``verbose`` (the vocabulary: tens of thousands of
#: entries), as Ollama leaves it out; the chat template is ``template``.
_BULKY = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")
_TEMPLATE = "tokenizer.chat_template"
#: Go's largest duration from now: what Ollama answers as ``expires_at`` for a model kept for ever.
_FOREVER = (2**63 - 1) / 1e9


@dataclass(frozen=True)
class Weights:
    """Where a model's weights are and what their file says."""

    path: Path | None
    size: int
    modified: float
    facts: gguf.Facts | None

    @property
    def digest(self) -> str:
        key = f"{self.path}\0{self.size}\0{self.modified}"
        return hashlib.sha256(key.encode()).hexdigest()


_CACHE: dict[tuple[str, int, float], gguf.Facts | None] = {}


def _weights(entry: ModelEntry) -> Weights:
    _, local = listing.location(entry.config.options)
    if local is None:
        return Weights(None, 0, float(entry.created), None)
    stat = local.stat()
    size = disk_size(local)
    facts = None
    if local.is_file() and gguf.is_gguf(local):
        key = (str(local), stat.st_size, stat.st_mtime)
        if key not in _CACHE:
            try:
                _CACHE[key] = gguf.read_facts(local)
            except LoomError:
                _CACHE[key] = None
        facts = _CACHE[key]
    return Weights(local, size, stat.st_mtime, facts)


async def weights(entry: ModelEntry) -> Weights:
    """The model's weights, their file read on a worker thread the first time."""
    return await asyncio.to_thread(_weights, entry)


def timestamp(seconds: float) -> str:
    """RFC 3339 with the local offset, as Ollama writes times."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).astimezone().isoformat()


def _size_label(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def details(entry: ModelEntry, w: Weights) -> OllamaDetails:
    if w.facts is not None:
        meta = w.facts.meta
        arch = meta.get("general.architecture", "")
        name = w.path.name if w.path is not None else ""
        label = quant_label(name) if name else ""
        quant = label if label and label != name else _file_type(meta)
        return OllamaDetails(
            format="gguf",
            family=arch,
            families=[arch],
            parameter_size=_size_label(w.facts.n_params),
            quantization_level=quant or "",
        )
    kind = "safetensors" if w.path is not None and entry.spec.provider != "llamacpp" else entry.spec.provider
    return OllamaDetails(format=kind, family=entry.spec.provider, families=[entry.spec.provider])


def served_context(entry: ModelEntry, w: Weights | None = None) -> int | None:
    """The context one request gets: the provider's ``n_ctx`` option (its default included: the
    decoded options carry it), else the file's own."""
    n_ctx = getattr(entry.spec.options, "n_ctx", None)
    if isinstance(n_ctx, int):
        return n_ctx
    if w is not None and w.facts is not None:
        arch = w.facts.meta.get("general.architecture", "")
        value = w.facts.meta.get(f"{arch}.context_length")
        return int(value) if value and value.isdigit() else None
    return None


def capabilities(entry: ModelEntry, w: Weights) -> list[str]:
    """Ollama's capabilities: completion, tools, vision, embedding, insert."""
    caps = entry.capabilities
    out = []
    if caps & {Capability.CHAT, Capability.COMPLETION}:
        out.append("completion")
    if Capability.CHAT in caps:
        out.append("tools")
    if Capability.VISION in caps:
        out.append("vision")
    if Capability.EMBEDDING in caps:
        out.append("embedding")
    if Capability.COMPLETION in caps and w.facts is not None and w.facts.fim is not None:
        out.append("insert")
    return out


def _value(raw: str) -> Any:
    """A metadata value as its JSON type (llama.cpp hands every value over as a string)."""
    if raw.lstrip("-").isdigit():
        return int(raw)
    try:
        number = float(raw)
    except ValueError:
        return {"true": True, "false": False}.get(raw, raw)
    return number if math.isfinite(number) else raw


def model_info(entry: ModelEntry, w: Weights, verbose: bool) -> dict[str, Any]:
    """The GGUF key/values; ``<arch>.context_length`` is the context a request gets on Loom
    (what clients size prompts by), ``general.parameter_count`` the file's parameter count."""
    if w.facts is None:
        info: dict[str, Any] = {"general.architecture": entry.spec.provider}
        context = served_context(entry, w)
        if context is not None:
            info[f"{entry.spec.provider}.context_length"] = context
        return info
    info = {}
    for key, raw in sorted(w.facts.meta.items()):
        if key == _TEMPLATE:
            continue
        info[key] = None if key in _BULKY and not verbose else _value(raw)
    info["general.parameter_count"] = w.facts.n_params
    arch = w.facts.meta.get("general.architecture", "")
    context = served_context(entry, w)
    if context is not None:
        info[f"{arch}.context_length"] = context
    return info


def template(w: Weights) -> str:
    return w.facts.meta.get(_TEMPLATE, "") if w.facts is not None else ""


def modelfile(entry: ModelEntry, w: Weights) -> str:
    """A Modelfile-like summary: where the weights are and the parameters Loom serves with."""
    where, _ = listing.location(entry.config.options)
    lines = [f"# Served by Loom: model '{entry.id}' (provider {entry.spec.provider})"]
    lines.append(f"FROM {w.path or where or entry.spec.provider}")
    lines += [f"PARAMETER {line}" for line in parameters(entry, w).splitlines()]
    return "\n".join(lines) + "\n"


def parameters(entry: ModelEntry, w: Weights) -> str:
    context = served_context(entry, w)
    return f"num_ctx {context}" if context is not None else ""


def expires_at(keep_alive: float | None, last_used_wall: float) -> str:
    """When a resident model unloads unless used again (Go's largest duration from now for one
    kept for ever, as Ollama answers)."""
    if keep_alive is None or math.isinf(keep_alive):
        return timestamp(min(last_used_wall + _FOREVER, dt.datetime.max.replace(tzinfo=dt.UTC).timestamp() - 86400))
    return timestamp(last_used_wall + keep_alive)


def modified(w: Weights) -> str:
    return timestamp(w.modified)
