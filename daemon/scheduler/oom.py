"""Recognising out-of-memory failures from any runtime, without importing any of them."""

from __future__ import annotations

import asyncio
import re

from loom.sdk.errors import Cancelled, InvalidRequest, LoomError, OutOfMemory, ProviderError

# torch: "CUDA out of memory"; llama.cpp: "failed to allocate ... buffer", "unable to allocate
# backend buffer", ggml "cudaMalloc failed: out of memory"; numpy/glibc: "Unable to allocate".
_WORDS = re.compile(
    r"out of memory|\boom\b|failed to allocate|unable to allocate|cannot allocate|could not allocate"
    r"|allocation failed|cudamalloc|cublas_status_alloc_failed|insufficient memory",
    re.IGNORECASE,
)


def class_names(error: BaseException) -> list[str]:
    """The error's class names, most specific first; for an error raised in a worker process,
    the names of the original classes (``RemoteError.names``)."""
    names = getattr(error, "names", None)
    if isinstance(names, list) and names:
        return names
    return [cls.__name__ for cls in type(error).__mro__]


def is_oom(error: BaseException) -> bool:
    if isinstance(error, (OutOfMemory, MemoryError)):
        return True
    if isinstance(error, (Cancelled, InvalidRequest, asyncio.CancelledError)):
        return False
    names = class_names(error)
    if "OutOfMemoryError" in names or "MemoryError" in names:
        return True  # torch.cuda.OutOfMemoryError / torch.OutOfMemoryError, by name
    return bool(_WORDS.search(str(error)))


def as_loom_error(error: BaseException, model: str, device: str, stage: str) -> LoomError:
    """What the client sees: Loom errors as they are, OOM as 503, anything else as a 502."""
    if isinstance(error, OutOfMemory):
        return error
    name = class_names(error)[0]
    e: LoomError
    if is_oom(error):
        e = OutOfMemory(
            f"model '{model}' ran out of memory on {device} at {stage}, even after evicting other models: {name}: {error}"
        )
    elif isinstance(error, LoomError):
        return error
    else:
        e = ProviderError(f"model '{model}' failed at {stage}: {name}: {error}")
    e.__cause__ = error
    return e
