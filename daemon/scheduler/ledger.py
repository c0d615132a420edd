"""The memory ledger: what each resident model holds on a device, and what loads have reserved.

A load reserves its estimate first (admission), then commits what was measured. The ledger refuses
any reservation or commit that would take it over budget, so "never over budget" is enforced here
rather than hoped for by the callers. ``peak`` records the highest total ever held (tests check it).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from dataclasses import dataclass, field

from loom.sdk.errors import OutOfMemory

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(eq=False)
class Residency:
    """One resident model."""

    model: str
    device: str
    estimate: int  # bytes admitted on
    footprint: int  # bytes the ledger charges: max(reported or override, measured)
    measured: int | None  # allocator/RSS delta seen at load, when it could be measured
    load_seconds: float
    loaded_at: float = field(default_factory=time.monotonic)
    loaded_wall: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    last_priority: int = 0
    pinned: bool = False
    evicting: bool = False  # chosen as a victim; nothing new starts on it


class Ledger:
    def __init__(self, device: str, budget: int | None) -> None:
        self.device = device
        self.budget = budget  # None = unlimited (remote)
        self.resident: dict[str, Residency] = {}
        self.reserved: dict[str, int] = {}
        self.peak = 0

    @property
    def used(self) -> int:
        return sum(r.footprint for r in self.resident.values())

    @property
    def held(self) -> int:
        """Resident footprints plus reservations of loads in progress."""
        return self.used + sum(self.reserved.values())

    @property
    def free(self) -> float:
        return float("inf") if self.budget is None else self.budget - self.held

    def _check(self, extra: int, what: str) -> None:
        if self.budget is not None and self.held + extra > self.budget:
            raise OutOfMemory(
                f"{what} needs {_mb(extra)} on {self.device} but only {_mb(max(0, self.budget - self.held))} "
                f"of the {_mb(self.budget)} budget is free"
            )

    def reserve(self, model: str, nbytes: int) -> None:
        self._check(nbytes, f"loading '{model}'")
        self.reserved[model] = nbytes
        self.peak = max(self.peak, self.held)

    def cancel(self, model: str) -> None:
        self.reserved.pop(model, None)

    def commit(self, residency: Residency) -> None:
        """Turn the reservation into a resident entry charged at ``residency.footprint``."""
        reserved = self.reserved.pop(residency.model, 0)
        try:
            self._check(residency.footprint, f"'{residency.model}' as measured")
        except OutOfMemory:
            self.reserved[residency.model] = reserved
            raise
        self.resident[residency.model] = residency
        self.peak = max(self.peak, self.held)

    def release(self, model: str) -> Residency | None:
        return self.resident.pop(model, None)


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


# --- measuring --------------------------------------------------------------------------------


class MemoryProbe:
    """Reads how much memory the process holds on one device; None when it cannot tell."""

    def read(self) -> int | None:
        return None

    def collect(self) -> None:
        """Give freed memory back (run on the device's thread after an unload)."""
        gc.collect()


class CpuProbe(MemoryProbe):
    """Resident set size from /proc/self/statm; glibc's malloc_trim returns freed heap pages."""

    def __init__(self) -> None:
        self._trim = None
        if sys.platform.startswith("linux"):
            try:
                self._trim = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):
                self._trim = None

    def read(self) -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return None

    def collect(self) -> None:
        gc.collect()
        if self._trim is not None:
            self._trim(0)


class CudaProbe(MemoryProbe):
    """torch's allocator on one device (torch is imported already when a CUDA device exists)."""

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


def probe_for(kind: str, index: int = 0) -> MemoryProbe:
    if kind == "cpu":
        return CpuProbe()
    if kind == "cuda":
        return CudaProbe(index)
    return MemoryProbe()
