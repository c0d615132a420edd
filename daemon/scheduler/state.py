"""One device's state: what it holds and what waits for it.

Two parts write it, each only its own fields: :class:`~.residency.Residents` (the ledger, the
workers, what is loading or draining, the operation lock) and :class:`~.dispatch.Dispatcher`
(the queue, what runs, the per-model running counts). Each reads the other's fields to decide
(a busy model is not evicted; a model being loaded does not start), never writes them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from ..workers import Worker
from .devices import Device
from .ledger import Ledger, Residency
from .queues import DeviceQueue, WorkItem


@dataclass(eq=False)
class DeviceState:
    info: Device
    ledger: Ledger
    # --- written by residency ---
    workers: dict[str, Worker] = field(default_factory=dict)  # resident model -> its worker
    loading: str | None = None  # the model a load operation is bringing in
    draining: set[str] = field(default_factory=set)  # explicit unloads waiting for idle
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one load/unload at a time
    # --- written by dispatch ---
    queue: DeviceQueue = field(default_factory=DeviceQueue)
    running: dict[str, WorkItem] = field(default_factory=dict)
    busy: Counter = field(default_factory=Counter)  # running items per model
    waiters: list[asyncio.Future] = field(default_factory=list)  # woken at every dispatch
    dispatch_pending: bool = False
    grace_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def parallel(self) -> bool:
        return self.info.parallel

    def active(self) -> set[str]:
        """Models running or being loaded here."""
        out = {m for m, n in self.busy.items() if n > 0}
        if self.loading is not None:
            out.add(self.loading)
        return out

    def evictable(self, exclude: str | None = None) -> list[Residency]:
        return [
            r
            for r in self.ledger.resident.values()
            if r.model != exclude and not r.pinned and not r.evicting and not self.busy.get(r.model)
        ]

    def demand(self) -> dict[str, int]:
        """Queued items per resident model (what eviction weighs)."""
        return {m: self.queue.count(m) for m in self.ledger.resident}
