"""``loom models scan``: models already on this machine, in the stores other tools keep.

- the Hugging Face cache (``huggingface_hub.scan_cache_dir``): each cached repository, or each
  GGUF quantisation in a GGUF repository;
- Ollama's store (``$OLLAMA_MODELS``, else ``~/.ollama/models``, and the Linux service's
  ``/usr/share/ollama/.ollama/models``): each ``name:tag`` manifest names its weights blob, a
  GGUF file that llama.cpp serves as it is;
- LM Studio's folder (``~/.lmstudio/models``, the older ``~/.cache/lm-studio/models``):
  ``publisher/repository/*.gguf``.

Each find is recognised the way ``loom models add`` would (``detect``) and comes with the
``[[models]]`` entry that serves it; what cannot be served says why.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.sdk.errors import InvalidRequest

from . import hub
from .detect import Detected, detect_path, gguf_files, suggest_id

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_REGISTRY = "registry.ollama.ai"


@dataclass
class Found:
    store: str  # "huggingface", "ollama", "lmstudio"
    name: str  # how that store names it
    path: Path
    size: int
    #: The [[models]] entry to serve it, or None when it cannot be served (``note`` says why).
    model: dict[str, Any] | None = None
    #: What ``loom models add`` takes to add it.
    source: str = ""
    file: str | None = None
    summary: str = ""
    note: str = ""
    capabilities: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "name": self.name,
            "path": str(self.path),
            "size": self.size,
            "summary": self.summary,
            "capabilities": self.capabilities,
            "model": self.model,
            "add": self.add_command(),
            "note": self.note or None,
        }

    def add_command(self) -> str | None:
        if self.model is None:
            return None
        args = ["loom", "models", "add", _quote(self.source)]
        if self.file:
            args += ["--file", _quote(self.file)]
        return " ".join([*args, "--id", self.model["id"]])


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def model_entry(model_id: str, detected: Detected, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``[[models]]`` table serving ``detected`` (keys in the order a person would write them)."""
    entry: dict[str, Any] = {"id": model_id, "provider": detected.provider}
    if detected.capabilities:
        entry["capabilities"] = list(detected.capabilities)
    entry["options"] = {**detected.options, **(options or {})}
    return entry


def _found(store: str, name: str, path: Path, source: str, model_id: str, file: str | None = None) -> Found:
    try:
        detected = detect_path(path)
    except InvalidRequest as e:
        size = path.stat().st_size if path.is_file() else 0
        return Found(store, name, path, size, source=source, note=e.message)
    return Found(
        store,
        name,
        path,
        detected.size,
        model=model_entry(model_id, detected),
        source=source,
        file=file,
        summary=detected.summary(),
        capabilities=detected.capabilities,
    )


# --- Hugging Face -------------------------------------------------------------------------------


def scan_huggingface(cache_dir: str | Path | None = None) -> list[Found]:
    out = []
    for repo in hub.cached_repos(cache_dir):
        rev = hub.current_revision(repo)
        if rev is None:
            continue
        snapshot = Path(rev.snapshot_path)
        ggufs = gguf_files(snapshot)
        if ggufs:
            for path in ggufs:
                rel = str(path.relative_to(snapshot))
                found = _found("huggingface", f"{repo.repo_id}/{rel}", path, repo.repo_id, suggest_id(rel), rel)
                out.append(found)
            continue
        found = _found("huggingface", repo.repo_id, snapshot, repo.repo_id, suggest_id(repo.repo_id))
        if found.model is not None:
            # Named by hub id, the libraries read it from the cache (and update it when online).
            key = "model"
            value = repo.repo_id if found.model["provider"] != "openclip" else f"hf-hub:{repo.repo_id}"
            found.model["options"][key] = value
        found.size = repo.size_on_disk
        out.append(found)
    return out


# --- Ollama -------------------------------------------------------------------------------------


def ollama_roots(root: str | Path | None = None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return [Path("~/.ollama/models").expanduser(), Path("/usr/share/ollama/.ollama/models")]


def _ollama_name(parts: tuple[str, ...]) -> str:
    """manifests/<registry>/<namespace>/<model>/<tag> -> "model:tag" (library models), else the path."""
    *prefix, model, tag = parts
    if prefix == [OLLAMA_DEFAULT_REGISTRY, "library"]:
        return f"{model}:{tag}"
    if prefix and prefix[0] == OLLAMA_DEFAULT_REGISTRY:
        prefix = prefix[1:]
    return "/".join([*prefix, model]) + f":{tag}"


def scan_ollama(root: str | Path | None = None) -> list[Found]:
    out = []
    for base in ollama_roots(root):
        manifests = base / "manifests"
        if not manifests.is_dir():
            continue
        for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
            parts = manifest.relative_to(manifests).parts
            if len(parts) < 3:
                continue
            name = _ollama_name(parts)
            try:
                layers = json.loads(manifest.read_text()).get("layers", [])
                layer = next(la for la in layers if la.get("mediaType") == OLLAMA_MODEL_LAYER)
                blob = base / "blobs" / layer["digest"].replace(":", "-")
            except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
                out.append(Found("ollama", name, manifest, 0, note=f"{manifest}: no model layer in this manifest"))
                continue
            if not blob.is_file():
                out.append(Found("ollama", name, blob, 0, note=f"the weights blob {blob} is missing"))
                continue
            out.append(_found("ollama", name, blob, str(blob), suggest_id(name.replace(":", "-"))))
    return out


# --- LM Studio ----------------------------------------------------------------------------------


def lmstudio_roots(root: str | Path | None = None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    return [Path("~/.lmstudio/models").expanduser(), Path("~/.cache/lm-studio/models").expanduser()]


def scan_lmstudio(root: str | Path | None = None) -> list[Found]:
    out = []
    for base in lmstudio_roots(root):
        if not base.is_dir():
            continue
        for path in gguf_files(base):
            name = str(path.relative_to(base))
            out.append(_found("lmstudio", name, path, str(path), suggest_id(path.name)))
    return out


def scan(
    hf_cache: str | Path | None = None,
    ollama: str | Path | None = None,
    lmstudio: str | Path | None = None,
    taken: set[str] | frozenset[str] = frozenset(),
) -> list[Found]:
    """Everything the three stores hold; suggested ids avoid ``taken`` and each other."""
    found = scan_huggingface(hf_cache) + scan_ollama(ollama) + scan_lmstudio(lmstudio)
    used = set(taken)
    for f in found:
        if f.model is None:
            continue
        base = candidate = f.model["id"]
        n = 2
        while candidate in used:
            candidate, n = f"{base}-{n}", n + 1
        f.model["id"] = candidate
        used.add(candidate)
    return found
