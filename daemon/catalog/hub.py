"""The Hugging Face hub and its cache: what is cached, and ``loom pull``.

Everything goes through ``huggingface_hub``: the cache layout, ``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_ENDPOINT``, tokens (``HF_TOKEN``, ``hf auth login``), its progress bars, and resuming: a
dropped connection is resumed with a Range request, and pulling again after an interruption
fetches only the files that are not complete yet. A repository of GGUF files is a set of
quantisations; ``pull`` fetches one (named, or chosen from the list), not all of them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.sdk.errors import InvalidRequest, PermissionDenied, Unavailable

from .detect import quant_label

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: Weight formats no Loom provider loads; a pull leaves them on the hub.
OTHER_FRAMEWORKS = [
    "*.onnx",
    "*.onnx_data",
    "onnx/*",
    "*.msgpack",
    "*.h5",
    "tf_model*",
    "flax_model*",
    "*.ot",
    "*.tflite",
    "coreml/*",
    "openvino/*",
]
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def is_hub_id(ref: str) -> bool:
    return bool(HUB_ID.match(ref)) and not ref.startswith((".", "/", "~"))


def hub_cache(cache_dir: str | Path | None = None) -> Path:
    """The cache ``huggingface_hub`` uses (``HF_HUB_CACHE``, else ``HF_HOME/hub``), or ``cache_dir``."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def cached_repos(cache_dir: str | Path | None = None) -> list[Any]:
    """The model repositories in the cache (``huggingface_hub.CachedRepoInfo``), by id."""
    from huggingface_hub import CacheNotFound, scan_cache_dir

    try:
        info = scan_cache_dir(hub_cache(cache_dir))
    except CacheNotFound:
        return []
    return sorted((r for r in info.repos if r.repo_type == "model"), key=lambda r: r.repo_id)


def current_revision(repo: Any, revision: str | None = None) -> Any | None:
    """The cached revision ``revision`` (a ref or commit) names, else ``main``'s, else the newest."""
    by_ref = repo.refs
    for want in (revision, "main") if revision else ("main",):
        if want in by_ref:
            return by_ref[want]
    for rev in repo.revisions:
        if revision and rev.commit_hash.startswith(revision):
            return rev
    if revision:
        return None
    return max(repo.revisions, key=lambda r: r.last_modified, default=None)


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path | None:
    """The snapshot folder of ``repo_id`` in the cache, or None when it was never downloaded.

    Read from the cache's documented layout (``refs/<revision>`` names the snapshot) rather than
    by scanning the whole cache, since the listing asks this for each model.
    """
    from huggingface_hub.file_download import repo_folder_name

    repo = hub_cache(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / (revision or "main")
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    if revision:
        return snapshots / revision if (snapshots / revision).is_dir() else None
    folders = [p for p in snapshots.iterdir() if p.is_dir()]
    return max(folders, key=lambda p: p.stat().st_mtime, default=None)


@dataclass
class Quantisation:
    """One GGUF model in a repository: a file, or the shards of one."""

    label: str
    files: list[str]
    size: int

    def describe(self) -> str:
        shards = f", {len(self.files)} shards" if len(self.files) > 1 else ""
        return f"{self.label}  {self.files[0]}  ({_mb(self.size)}{shards})"


def quantisations(files: dict[str, int]) -> list[Quantisation]:
    """The GGUF models among a repository's ``files`` (name -> size), shards grouped, smallest first."""
    groups: dict[str, Quantisation] = {}
    for name, size in sorted(files.items()):
        if not name.lower().endswith(".gguf") or "mmproj" in name.lower():
            continue
        key = _SHARD.sub(".gguf", name)
        q = groups.setdefault(key, Quantisation(quant_label(key), [], 0))
        q.files.append(name)
        q.size += size
    return sorted(groups.values(), key=lambda q: q.size)


def choose_quantisation(repo_id: str, quants: list[Quantisation], file: str | None) -> Quantisation:
    """The quantisation ``file`` names (a file name or a label such as ``Q4_K_M``), or the only one."""
    if file is not None:
        for q in quants:
            if file in q.files or q.label.lower() == file.lower():
                return q
    elif len(quants) == 1:
        return quants[0]
    listed = "\n  ".join(q.describe() for q in quants)
    what = (
        f"nothing in {repo_id} matches {file!r}" if file is not None else f"{repo_id} has {len(quants)} quantisations"
    )
    raise InvalidRequest(f"{what}; choose one with --file (a label or a file name):\n  {listed}", param="file")


@dataclass
class Pulled:
    repo_id: str
    snapshot: Path
    files: list[str]
    #: The GGUF file to serve, for a GGUF repository.
    gguf: Path | None = None
    quantisation: str | None = None
    notes: list[str] = field(default_factory=list)


def pull(
    repo_id: str,
    *,
    file: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    choose: Callable[[list[Quantisation]], Quantisation] | None = None,
    planned: Callable[[list[str], int], None] | None = None,
) -> Pulled:
    """Download ``repo_id`` into the hub cache (one quantisation of a GGUF repository).

    ``choose`` picks among several quantisations when ``file`` names none (the CLI asks the
    user); without it, several are an InvalidRequest that lists them. ``planned`` hears the
    files about to be fetched and their size in bytes, before the download starts.
    """
    if not is_hub_id(repo_id):
        raise InvalidRequest(f"{repo_id!r} is not a Hugging Face hub id (org/name)", param="source")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        files = {
            f.path: f.size
            for f in HfApi().list_repo_tree(repo_id, recursive=True, revision=revision)
            if hasattr(f, "size")
        }
        quants = quantisations(files)
        chosen = None
        if quants:
            if file is None and len(quants) > 1 and choose is not None:
                chosen = choose(quants)
            else:
                chosen = choose_quantisation(repo_id, quants, file)
            allow, ignore = chosen.files, None
        else:
            allow = None
            ignore = list(OTHER_FRAMEWORKS)
            if any(name.endswith(".safetensors") for name in files):
                ignore += ["*.bin", "*.pth", "*.pt"]  # the libraries load the safetensors copy
        if planned is not None:
            wanted = [name for name in files if _allowed(name, allow, ignore)]
            planned(wanted, sum(files[name] or 0 for name in wanted))
        snapshot = Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=allow, ignore_patterns=ignore
            )
        )
    except HfHubHTTPError as e:
        raise _hub_error(repo_id, e) from None
    except Exception as e:
        if isinstance(e, OSError) or type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            raise Unavailable(f"cannot reach the Hugging Face hub at {_endpoint()} for {repo_id}: {e}") from None
        raise
    pulled = Pulled(repo_id=repo_id, snapshot=snapshot, files=sorted(allow or files))
    if chosen is not None:
        pulled.gguf = snapshot / chosen.files[0]
        pulled.quantisation = chosen.label
    return pulled


def _allowed(name: str, allow: list[str] | None, ignore: list[str] | None) -> bool:
    """Whether ``snapshot_download`` fetches ``name`` with these patterns."""
    if allow is not None and not any(fnmatch.fnmatch(name, p) for p in allow):
        return False
    return not (ignore and any(fnmatch.fnmatch(name, p) for p in ignore))


def _hub_error(repo_id: str, e: Exception) -> Exception:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(e, GatedRepoError):
        return PermissionDenied(
            f"{repo_id} is gated: accept its terms on the hub, then log in (`hf auth login`) or set HF_TOKEN"
        )
    if isinstance(e, RepositoryNotFoundError):
        return InvalidRequest(
            f"no model repository {repo_id} on the hub (or it is private: log in or set HF_TOKEN)", param="source"
        )
    if isinstance(e, RevisionNotFoundError):
        return InvalidRequest(f"{repo_id} has no such revision", param="revision")
    return Unavailable(f"the Hugging Face hub refused {repo_id}: {str(e).splitlines()[0]}")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _mb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
