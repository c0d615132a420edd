"""What ``loom models ls`` / ``show`` and ``GET /admin/models`` say about each model.

The weights' location and size come from the options the built-in providers share: ``path``
(a file), ``model`` (a folder or a hub id) or ``package`` + ``file`` (a GGUF inside a Python
package). A model that names none of these (a remote API) has no size.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loom.sdk.errors import LoomError

from . import hub
from .detect import disk_size

if TYPE_CHECKING:
    from ..models import ModelEntry
    from ..scheduler import Scheduler


def location(options: dict[str, Any]) -> tuple[str | None, Path | None]:
    """(where the weights are, as the config says it; the local file or folder, if found)."""
    if isinstance(options.get("path"), str):
        path = Path(os.path.expanduser(options["path"]))
        return options["path"], path if path.exists() else None
    if isinstance(options.get("package"), str) and isinstance(options.get("file"), str):
        where = f"{options['file']} in Python package {options['package']}"
        return where, _package_file(options["package"], options["file"])
    ref = options.get("model")
    if isinstance(ref, str):
        path = Path(os.path.expanduser(ref))
        if path.exists():
            return ref, path
        repo_id = ref.removeprefix("hf-hub:")
        if hub.is_hub_id(repo_id):
            return ref, hub.cached_snapshot(repo_id, options.get("revision"), options.get("cache_dir"))
        return ref, None
    return None, None


def _package_file(package: str, file: str) -> Path | None:
    # find_spec locates the package without running its __init__ (which may import heavy things).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        for found in Path(root).rglob(file):
            if found.is_file():
                return found
    return None


def record(entry: ModelEntry, scheduler: Scheduler | None = None) -> dict[str, Any]:
    """One model: what it is, where its weights are and how big, and (running) whether it is loaded."""
    where, local = location(entry.config.options)
    out: dict[str, Any] = {
        "id": entry.id,
        "aliases": list(entry.config.aliases),
        "provider": entry.spec.provider,
        "plugin": entry.plugin,
        "declared_by": "config" if entry.source == "config" else f"plugin {entry.source}",
        "capabilities": sorted(c.value for c in entry.capabilities),
        "description": entry.config.description,
        "location": where,
        "path": str(local) if local is not None else None,
        "size": disk_size(local) if local is not None else None,
        "options": entry.config.options,
        "keep_alive": entry.config.keep_alive,
    }
    if scheduler is not None:
        try:
            state = scheduler.model_state(entry)
        except LoomError:  # placed on a device Loom does not have
            return out
        out.update(
            loaded=state["loaded"],
            device=state["device"],
            pinned=state["pinned"],
            footprint=state.get("footprint"),
            running=state["running"],
            queued=state["queued"],
        )
    return out
