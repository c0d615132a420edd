"""``/api/pull``: Ollama's pull over ``loom pull``, from the Hugging Face hub.

Loom pulls what ``loom pull`` pulls: a hub repository, named as Ollama names Hugging Face models
(``hf.co/org/repo:Q4_K_M``) or as ``org/repo:Q4_K_M``; the tag picks the GGUF quantisation
(``latest`` or none: the repository's only one). The download is ``huggingface_hub``'s (the
standard cache, resumed after a dropped connection), its progress is reported as Ollama's lines
(``pulling manifest``; ``pulling <digest>`` with ``total`` and ``completed`` bytes, read from the
cache as it fills; ``success``), and the model is then added to the config under the name it was
pulled by, so that name serves at once. Ollama's own registry is not a source: a name that is not
a hub id is a 400.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from loom.sdk.errors import InvalidRequest, LoomError

from ..catalog import hub
from ..catalog.edits import AddModel
from ..catalog.live import ModelCatalog
from .names import alias_for
from .wire import OllamaError, OllamaProgress

_PREFIXES = ("https://hf.co/", "https://huggingface.co/", "hf.co/", "huggingface.co/")
#: Seconds between progress lines while a download runs.
INTERVAL = 0.25


def parse(name: str) -> tuple[str, str | None]:
    """(hub repository, quantisation or file) of an Ollama model name."""
    repo = name
    for prefix in _PREFIXES:
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
            break
    tag = None
    if ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)
    if not hub.is_hub_id(repo):
        raise InvalidRequest(
            f"cannot pull '{name}': Loom pulls from the Hugging Face hub, named as org/repo or "
            "hf.co/org/repo with the quantisation as the tag (hf.co/org/repo:Q4_K_M), not from Ollama's registry",
            param="model",
        )
    return repo, None if tag in (None, "", "latest") else tag


class Puller:
    def __init__(self, catalog: ModelCatalog, name: str) -> None:
        self.catalog, self.name = catalog, name
        self.repo, self.file = parse(name)
        self.id = alias_for(name)
        self.total: int | None = None
        self.digest = hashlib.sha256(f"{self.repo}/{self.file}".encode()).hexdigest()

    def _planned(self, files: list[str], total: int) -> None:
        self.total = total

    def _blobs(self) -> Path:
        return hub.hub_cache() / f"models--{self.repo.replace('/', '--')}" / "blobs"

    def _cached_bytes(self) -> int:
        folder = self._blobs()
        try:
            return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        except OSError:
            return 0

    async def run(self) -> AsyncIterator[OllamaProgress]:
        yield OllamaProgress(status="pulling manifest")
        before = self._cached_bytes()
        task = asyncio.ensure_future(asyncio.to_thread(hub.pull, self.repo, file=self.file, planned=self._planned))
        label = f"pulling {self.digest[:12]}"
        digest = f"sha256:{self.digest}"
        while not task.done():
            await asyncio.wait([task], timeout=INTERVAL)
            if self.total is not None and not task.done():
                done = min(self.total, max(0, self._cached_bytes() - before))
                yield OllamaProgress(status=label, digest=digest, total=self.total, completed=done)
        pulled = task.result()
        total = self.total or 0
        yield OllamaProgress(status=label, digest=digest, total=total, completed=total)
        if self.id not in self.catalog.registry:
            source = str(pulled.gguf) if pulled.gguf is not None else self.repo
            yield OllamaProgress(status=f"adding {self.id} to the config")
            await self.catalog.add(AddModel(source=source, id=self.id))
        yield OllamaProgress(status="success")

    async def ndjson(self) -> AsyncIterator[bytes]:
        """The lines; a failure is a last ``{"error": ...}`` line, as Ollama streams one."""
        try:
            async for progress in self.run():
                yield msgspec.json.encode(progress) + b"\n"
        except LoomError as e:
            yield msgspec.json.encode(OllamaError(e.message)) + b"\n"
