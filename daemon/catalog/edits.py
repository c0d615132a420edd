"""Adding and removing ``[[models]]``: from a request to the new text of the config file.

Both the running daemon (``live.ModelCatalog``, behind ``POST`` / ``DELETE /admin/models``) and
the CLI with no daemon to talk to use these steps, so the two edit the file the same way:
recognise the source, build the entry, produce the new text, validate it as start-up would, and
only then write it. Any failure leaves the file as it was.
"""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path
from typing import Any

from loom.sdk.errors import ConfigError, Conflict, InvalidRequest, NotFound
from loom.sdk.types import Capability
from msgspec import Struct, field

from .. import config_file
from ..models import ModelRegistry
from . import hub
from .detect import Detected, detect_path
from .stores import model_entry


class AddModel(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The body of ``POST /admin/models`` and what ``loom models add`` sends."""

    #: A GGUF file, a model folder, or a hub id already in the Hugging Face cache (``loom pull``).
    source: str
    #: The public model id; default: from the file, folder or repository name.
    id: str | None = None
    #: Which GGUF in a folder or repository: a file name or a quantisation ("Q4_K_M").
    file: str | None = None
    #: Serve it with this provider rather than the one detected (e.g. "transformers-embedding").
    provider: str | None = None
    #: Narrow what it serves; default: what was detected.
    capabilities: list[Capability] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    #: Provider options on top of the detected ones (e.g. {"n_ctx": 4096}).
    options: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    keep_alive: str | int | None = None


def detect_source(source: str, file: str | None = None) -> tuple[Detected, str | None]:
    """(what ``source`` is, the hub id when it came from the cache)."""
    path = Path(os.path.expanduser(source))
    if path.exists():
        return detect_path(Path(os.path.abspath(path)), file=file), None  # links kept: cache paths stay readable
    if not hub.is_hub_id(source):
        raise InvalidRequest(
            f"{path.absolute()}: no such file or folder; expected a GGUF file, a model folder or a "
            "Hugging Face hub id (org/name)",
            param="source",
        )
    snapshot = hub.cached_snapshot(source)
    if snapshot is None:
        raise InvalidRequest(
            f"{source} is not a file or folder here and not in the Hugging Face cache ({hub.hub_cache()}); "
            f"download it first with `loom pull {source}` (or `loom models add {source} --pull`)",
            param="source",
        )
    detected = detect_path(Path(snapshot), file=file)
    if detected.kind != "gguf":
        # Named by hub id, the libraries read it from the cache and keep it current when online.
        detected.options["model"] = f"hf-hub:{source}" if detected.provider == "openclip" else source
    detected.name = detected.name if detected.kind == "gguf" else source.rsplit("/", 1)[-1].lower()
    return detected, source


def model_for(req: AddModel, detected: Detected) -> dict[str, Any]:
    """The ``[[models]]`` entry for ``req`` as TOML-ready values."""
    entry = model_entry(req.id or detected.name, detected, req.options)
    if req.provider is not None and req.provider != detected.provider:
        entry["provider"] = req.provider
        entry.pop("capabilities", None)  # the chosen provider's own, unless narrowed below
    if req.capabilities:
        entry["capabilities"] = [Capability(c).value for c in req.capabilities]
    if req.aliases:
        entry["aliases"] = list(req.aliases)
    if req.keep_alive is not None:
        entry["keep_alive"] = req.keep_alive
    entry["description"] = req.description or f"{detected.summary()}, {_size(detected.size)}"
    order = ["id", "aliases", "provider", "capabilities", "options", "keep_alive", "description"]
    return {k: entry[k] for k in order if k in entry}


def note_for(req: AddModel) -> str:
    return f"added by `loom models add` from {req.source} on {datetime.date.today().isoformat()}"


def text_with(
    text: str, source: str, model: dict[str, Any], note: str, taken: set[str] | frozenset = frozenset()
) -> str:
    """The config text with ``model`` added; Conflict when its id or an alias is taken."""
    names = [model["id"], *model.get("aliases", [])]
    in_file = set(config_file.model_ids(text, source))
    for name in names:
        if name in in_file or name in taken:
            raise Conflict(
                f"a model named {name!r} already exists in {source}; choose another id (--id)",
                param="id",
            )
    return config_file.with_model(text, model, note, source)


def text_without(text: str, source: str, model_id: str) -> str:
    if model_id not in config_file.model_ids(text, source):
        raise NotFound(f"{source} has no [[models]] entry with id '{model_id}'")
    return config_file.without_model(text, model_id, source)


def decode_models(text: str, source: str):
    """The full config decoded from ``text`` as start-up would (ConfigError when it would not start)."""
    from ..config import check_config, decode_config

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None
    config = decode_config(raw, source)
    check_config(config)
    return config


def registry_offline(text: str, source: str) -> ModelRegistry:
    """The registry ``loom serve`` would build from ``text`` (plugins, providers, options, routes
    checked as at start), without starting anything."""
    from ..models import build_registry
    from ..plugin_manager import collect, collect_providers, make_plugin_manager

    config = decode_models(text, source)
    pm, infos = make_plugin_manager(config.plugins)
    return build_registry(config, collect_providers(pm, infos), collect(pm, "register_models"), infos)


def add_offline(path: Path, req: AddModel) -> dict[str, Any]:
    """``loom models add`` with no daemon running: edit ``path``; returns the entry written."""
    detected, _ = detect_source(req.source, req.file)
    model = model_for(req, detected)
    text = path.read_text(encoding="utf-8")
    new = text_with(text, str(path), model, note_for(req))
    registry_offline(new, str(path))
    config_file.write_atomic(path, new)
    return model


def remove_offline(path: Path, model_id: str) -> None:
    """``loom models rm`` with no daemon running."""
    text = path.read_text(encoding="utf-8")
    new = text_without(text, str(path), model_id)
    registry_offline(new, str(path))
    config_file.write_atomic(path, new)


def _size(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"
