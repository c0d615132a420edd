"""Measuring what a worker holds.

A worker process is measured whole: its resident set size from the OS (psutil) and its GPU
memory from NVML (:mod:`.nvml`), CUDA context and llama.cpp buffers included. A worker in the
daemon's process can only be measured as a change: the probes below read the process's RSS or
torch's allocator before and after a load or an unload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss(pid: int | None = None) -> int | None:
    """Resident set size of process ``pid`` (this one by default), None when it cannot be read."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return None


def total_memory() -> int:
    """Physical memory in bytes, capped by the cgroup v2/v1 memory limit when one is set."""
    total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 0
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
        break
    return total


def trim() -> None:
    """Give freed heap pages back to the OS (glibc's malloc_trim), after a collection."""
    gc.collect()
    path = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if path is None:
        return
    try:
        ctypes.CDLL(path).malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --- probes for workers in the daemon's process ---------------------------------------------------


class MemoryProbe:
    """Reads how much memory the process holds on one device; None when it cannot tell."""

    def read(self) -> int | None:
        return None

    def collect(self) -> None:
        """Give freed memory back (run on the worker's thread after an unload)."""
        gc.collect()


class CpuProbe(MemoryProbe):
    """This process's resident set size; glibc's malloc_trim returns freed heap pages."""

    def read(self) -> int | None:
        return rss()

    def collect(self) -> None:
        trim()


class CudaProbe(MemoryProbe):
    """torch's allocator on one device (torch is imported already when a CUDA model ran here)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def read(self) -> int | None:
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        try:
            return int(torch.cuda.memory_allocated(self.index))
        except Exception:
            return None

    def collect(self) -> None:
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                with torch.cuda.device(self.index):
                    torch.cuda.empty_cache()
            except Exception:
                pass


def probe_for(device: str) -> MemoryProbe:
    if device == "cpu":
        return CpuProbe()
    if device.startswith("cuda"):
        return CudaProbe(int(device.partition(":")[2] or 0))
    return MemoryProbe()
