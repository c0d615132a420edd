"""Measuring the memory a model holds, and giving it back when the model unloads.

On CUDA the measure is ``torch.cuda.memory_allocated`` before and after loading; on the CPU it is
the process's resident set size (RSS) before and after. Either way the result is at least the
bytes of the model's own tensors, so a model whose weights are memory-mapped and not yet touched
is not reported as free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
from collections.abc import Iterable
from typing import Any


def rss_bytes() -> int:
    """This process's resident set size in bytes (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


def device_bytes(device: str) -> int:
    """Bytes in use now where ``device``'s models live: CUDA allocations, or this process's RSS."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.memory_allocated(torch.device(device)))
    return rss_bytes()


class MemoryMeter:
    """Started before a load; :meth:`held` is how much more memory the device holds since."""

    def __init__(self, device: str) -> None:
        self.device = device
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(torch.device(device))
        self.before = device_bytes(device)

    def held(self) -> int:
        return max(0, device_bytes(self.device) - self.before)


def tensor_bytes(modules: Iterable[Any]) -> int:
    """Bytes of the parameters and buffers of torch modules, each storage counted once."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        if module is None or not hasattr(module, "parameters"):
            continue
        for tensor in (*module.parameters(), *module.buffers()):
            try:
                key = tensor.untyped_storage().data_ptr()
            except Exception:  # meta tensors and other storage-less tensors
                continue
            if key in seen:
                continue  # tied weights share one storage
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


@functools.cache
def _malloc_trim():
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return ctypes.CDLL(path).malloc_trim
    except (OSError, AttributeError):
        return None


def release(device: str | None) -> None:
    """After the last reference to a model is dropped: collect it and return the memory.

    ``gc.collect()`` frees reference cycles (torch modules have many); on CUDA the caching
    allocator's free blocks go back with ``empty_cache``; on the CPU glibc's ``malloc_trim`` hands
    freed heap pages back to the system, so the RSS falls as well as the live heap.
    """
    gc.collect()
    if device is not None and device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
