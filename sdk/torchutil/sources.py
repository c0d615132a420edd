"""Where a model's weights come from: a local file or folder, or a Hugging Face hub id.

Loading itself is left to the library (``from_pretrained``, open_clip), which downloads a hub id
when online and honours the user's cache (``HF_HOME``, ``HF_HUB_CACHE``, ``cache_dir``) and
offline mode (``HF_HUB_OFFLINE``). This module decides what to hand the library and, when the
weights cannot be had, raises an error naming the model and every place Loom looked, instead of
the library's traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import ProviderError

#: ``org/name`` (or a legacy single name such as ``gpt2``), optionally ``@revision``-free.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
#: Files that hold weights, for size estimates; safetensors wins when a folder has both.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_TRUE = {"1", "true", "yes", "on"}
_VARIANT = re.compile(r"\.(fp16|bf16|fp32|non_ema|ema)(?=\.)")


@dataclass(frozen=True)
class Source:
    """A resolved model reference: ``location`` is what the loading library is given."""

    ref: str  # what the config said
    location: str  # a local path, or the hub id
    local: bool
    cache_dir: str  # the Hugging Face cache this source is read from (hub ids)

    def describe(self) -> str:
        return self.location if self.local else f"{self.ref} (Hugging Face cache {self.cache_dir})"


def offline() -> bool:
    """True when the user asked the Hugging Face libraries not to touch the network."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir(cache_dir: str | None = None) -> Path:
    """The hub cache the libraries use: ``cache_dir`` if given, else HF_HUB_CACHE, else HF_HOME/hub."""
    if cache_dir:
        return Path(os.path.expanduser(cache_dir))
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(os.path.expanduser(home)) / "hub"


def cached_snapshot(repo_id: str, cache: Path, revision: str | None = None) -> Path | None:
    """The folder of a cached snapshot of ``repo_id`` (the ref's or the newest), or None."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / (revision or "main")
    if ref.is_file():
        folder = snapshots / ref.read_text().strip()
        if folder.is_dir():
            return folder
    if revision and (snapshots / revision).is_dir():
        return snapshots / revision
    folders = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return folders[-1] if folders else None


def looks_like_path(ref: str) -> bool:
    return (
        ref.startswith(("/", "./", "../", "~", "\\"))
        or ref.endswith((*_WEIGHT_SUFFIXES, ".json"))
        or ref.count("/") > 1
        or not _HUB_ID.match(ref)
    )


def resolve_source(
    ref: str,
    *,
    provider: str,
    model_id: str,
    cache_dir: str | None = None,
    revision: str | None = None,
) -> Source:
    """Resolve ``ref``; raise ProviderError naming the model and the places looked if it is missing."""
    path = Path(os.path.expanduser(ref))
    if path.exists():
        return Source(ref=ref, location=str(path.resolve()), local=True, cache_dir="")
    cache = hub_cache_dir(cache_dir)
    if looks_like_path(ref):
        raise ProviderError(
            f"{provider}: model {model_id!r}: {ref!r} is not a file or folder on this machine "
            f"(looked at {path}) and is not a Hugging Face hub id (org/name)"
        )
    if offline() and cached_snapshot(ref, cache, revision) is None:
        raise ProviderError(
            f"{provider}: weights for model {model_id!r} ({ref}) are not available offline: "
            f"there is no local folder {path.absolute()} and no copy in the Hugging Face cache {cache}; "
            "HF_HUB_OFFLINE is set, so nothing was downloaded. Download it once with network access "
            f"(`hf download {ref}`), or point options.model at a local folder."
        )
    return Source(ref=ref, location=ref, local=False, cache_dir=str(cache))


def load_failure(e: BaseException, source: Source, *, provider: str, model_id: str) -> ProviderError:
    """A library's load error as a ProviderError that names the model and where Loom looked."""
    if source.local:
        where = f"local path {source.location}"
    else:
        mode = "offline (HF_HUB_OFFLINE)" if offline() else "online"
        where = f"hub id {source.ref}, Hugging Face cache {source.cache_dir}, {mode}"
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ProviderError(f"{provider}: could not load model {model_id!r} ({where}): {detail}")


def weights_bytes(source: Source, revision: str | None = None) -> int:
    """Bytes of weight files behind ``source`` (0 when unknown, e.g. a hub id not yet cached)."""
    if source.local:
        root = Path(source.location)
    else:
        snapshot = cached_snapshot(source.ref, Path(source.cache_dir), revision)
        if snapshot is None:
            return 0
        root = snapshot
    if root.is_file():
        return root.stat().st_size
    files = [p for p in root.rglob("*") if p.suffix in _WEIGHT_SUFFIXES and p.is_file()]
    # A folder may hold the same weights more than once: model.safetensors and pytorch_model.bin
    # (the libraries load the safetensors copy), or precision variants (x.safetensors and
    # x.fp16.safetensors, of which one loads). Count one copy, the largest, to stay on the safe side.
    with_safetensors = {p.parent for p in files if p.suffix == ".safetensors"}
    copies: dict[tuple[Path, str], int] = {}
    for p in files:
        if p.suffix != ".safetensors" and p.parent in with_safetensors:
            continue
        key = (p.parent, _VARIANT.sub("", p.name))
        copies[key] = max(copies.get(key, 0), p.stat().st_size)  # stat follows cache symlinks
    return sum(copies.values())
