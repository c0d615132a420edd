"""The memory ledger: what each resident model holds on a device, and what loads have reserved.

A load reserves its estimate first (admission), then commits what was measured. The ledger refuses
any reservation or commit that would take it over budget, so "never over budget" is enforced here
rather than hoped for by the callers. ``peak`` records the highest total ever held (tests check it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from loom.sdk.errors import OutOfMemory


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
    #: Seconds idle before it unloads, set by a request (Ollama's ``keep_alive``; ``math.inf``:
    #: never); None: the model's own ``keep_alive``.
    keep_alive: float | None = None


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
