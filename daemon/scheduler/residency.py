"""Residency: loading, evicting and unloading models, one operation per device at a time.

Every change to what a device holds (a load with the evictions it needs, an explicit unload, a
keep-alive expiry, evicting others after an out-of-memory error) runs under the device's
``op_lock``. Victims are marked ``evicting`` when chosen, so nothing new starts on them; the
ledger is charged the estimate before a load and what was measured after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loom.sdk.errors import OutOfMemory

from ..models import ModelEntry
from .devices import Device
from .ledger import Ledger, MemoryProbe, Residency
from .oom import as_loom_error, is_oom
from .queues import DeviceQueue, State, WorkItem

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("loom.scheduler")

#: On CPU the process RSS also moves with unrelated allocations; a measured footprint only
#: overrides what the provider reports when it is larger by more than this.
MEASURE_NOISE = 32 * 2**20


@dataclass(eq=False)
class DeviceState:
    info: Device
    ledger: Ledger
    probe: MemoryProbe
    queue: DeviceQueue = field(default_factory=DeviceQueue)
    running: dict[str, WorkItem] = field(default_factory=dict)
    busy: Counter = field(default_factory=Counter)  # running items per model
    loading: str | None = None  # the model a load operation is bringing in
    draining: set[str] = field(default_factory=set)  # explicit unloads waiting for idle
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiters: list[asyncio.Future] = field(default_factory=list)
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


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


class ResidencyOps:
    """Mixed into :class:`Scheduler`; everything here runs on the event loop."""

    def estimate(self: Scheduler, entry: ModelEntry) -> int:
        """Bytes admitted on: the config's override, else the provider's estimate (cached)."""
        cached = self._estimates.get(entry.id)
        if cached is None:
            if entry.vram_override is not None:
                cached = entry.vram_override
            else:
                cached = max(0, int(entry.instance().estimate_bytes() or 0))
            self._estimates[entry.id] = cached
        return cached

    def plan_load(self: Scheduler, dev: DeviceState, entry: ModelEntry, now: float):
        """("go", victims, need, "") | ("wait", [], need, "") | ("never", [], need, why)."""
        need = self.estimate(entry)
        ledger = dev.ledger
        if ledger.budget is None:
            return "go", [], need, ""
        pinned = sum(r.footprint for r in ledger.resident.values() if r.pinned and r.model != entry.id)
        if need > ledger.budget - pinned:
            why = f"model '{entry.id}' needs {_mb(need)} but the {dev.name} budget is {_mb(ledger.budget)}"
            return "never", [], need, why + (f", {_mb(pinned)} of it pinned" if pinned else "")
        free = ledger.free
        if need <= free:
            return "go", [], need, ""
        demand = {m: dev.queue.count(m) for m in ledger.resident}
        victims = self.policy.victims(dev.evictable(entry.id), need - free, demand, now)
        if victims is None:
            return "wait", [], need, ""  # busy models hold the memory; they will finish
        return "go", victims, need, ""

    def start_load(self: Scheduler, dev: DeviceState, item: WorkItem, victims: list[Residency], need: int) -> None:
        dev.loading = item.model
        for v in victims:
            v.evicting = True
        self._spawn(self._load_op(dev, item, victims, need))

    async def _load_op(self: Scheduler, dev: DeviceState, item: WorkItem, victims, need: int) -> None:
        entry = item.entry
        try:
            async with dev.op_lock:
                for v in victims:
                    await self._unload_now(dev, v.model, "evicted")
                await self._load_now(dev, entry, need)
        except BaseException as e:
            err = as_loom_error(e, entry.id, dev.name, "load")
            if item.state is State.QUEUED:
                self._drop(item, err, "failed", stage="load")
            else:
                self._publish("failed", model=entry.id, device=dev.name, stage="load", error=err.message)
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            dev.loading = None
            for v in victims:
                v.evicting = False  # still resident only if its unload failed
            self._kick(dev)

    async def _load_now(self: Scheduler, dev: DeviceState, entry: ModelEntry, need: int) -> Residency:
        """Load ``entry`` (the caller holds ``dev.op_lock``); evict others and retry once on OOM."""
        m = entry.id
        provider = entry.instance()
        lane = self._lane(dev, entry)
        dev.ledger.reserve(m, need)
        try:
            before, t0 = dev.probe.read(), time.monotonic()
            try:
                await self.executor.call(lane, provider.load, dev.name)
            except Exception as e:
                if not is_oom(e):
                    raise
                self.metrics.oom.labels(dev.name, m, "load").inc()
                log.warning("%s: out of memory loading on %s (%s); evicting others and retrying", m, dev.name, e)
                if not await self._evict_idle(dev, keep=m, reason="oom"):
                    raise
                await self._quiet_unload(lane, provider)
                before, t0 = dev.probe.read(), time.monotonic()
                await self.executor.call(lane, provider.load, dev.name)
            seconds = time.monotonic() - t0
            after = dev.probe.read()
            measured = after - before if before is not None and after is not None else None
            footprint = self._footprint(entry, provider, need, measured)
            await self._fit_measured(dev, entry, provider, need, footprint)
        except BaseException:
            dev.ledger.cancel(m)
            raise
        r = Residency(
            model=m,
            device=dev.name,
            estimate=need,
            footprint=footprint,
            measured=measured,
            load_seconds=seconds,
            pinned=m in self._pinned,
        )
        dev.ledger.commit(r)
        self.metrics.loads.labels(dev.name, m).inc()
        self.metrics.load_seconds.labels(m).observe(seconds)
        self._publish(
            "loaded",
            model=m,
            device=dev.name,
            footprint=footprint,
            estimate=need,
            measured=measured,
            seconds=round(seconds, 4),
            pinned=r.pinned,
        )
        self._publish_memory(dev)
        return r

    def _footprint(self, entry: ModelEntry, provider, need: int, measured: int | None) -> int:
        if entry.vram_override is not None:
            reported = entry.vram_override
        else:
            try:
                reported = max(0, int(provider.memory_bytes()))
            except Exception:
                reported = need
        if measured is not None and measured > reported + MEASURE_NOISE:
            return measured
        return reported

    async def _fit_measured(self: Scheduler, dev: DeviceState, entry: ModelEntry, provider, need: int, footprint: int):
        """A model that turned out bigger than its estimate: evict idle others, or give up."""
        ledger = dev.ledger
        if ledger.budget is None or footprint <= need:
            return
        shortfall = ledger.held - need + footprint - ledger.budget
        if shortfall <= 0:
            return
        demand = {m: dev.queue.count(m) for m in ledger.resident}
        victims = self.policy.victims(dev.evictable(entry.id), shortfall, demand, time.monotonic())
        if victims is None:
            await self._quiet_unload(self._lane(dev, entry), provider)
            raise OutOfMemory(
                f"model '{entry.id}' holds {_mb(footprint)} once loaded (estimated {_mb(need)}); "
                f"that does not fit the {dev.name} budget of {_mb(ledger.budget)} next to pinned or busy models"
            )
        for v in victims:
            v.evicting = True
        for v in victims:
            await self._unload_now(dev, v.model, "evicted")

    async def _quiet_unload(self: Scheduler, lane: str, provider) -> None:
        try:
            await self.executor.call(lane, provider.unload)
        except Exception as e:
            log.warning("unload after a failed load raised %s: %s", type(e).__name__, e)

    async def _unload_now(self: Scheduler, dev: DeviceState, m: str, reason: str) -> int:
        """Unload resident model ``m`` (caller holds ``dev.op_lock``); returns the bytes freed."""
        r = dev.ledger.resident.get(m)
        if r is None:
            return 0
        r.evicting = True
        entry = self.registry.entries.get(m)
        lane = self._lane(dev, entry) if entry is not None else dev.name
        before = dev.probe.read()
        error = None
        try:
            if entry is not None and entry.provider is not None:
                await self.executor.call(lane, entry.provider.unload)
            await self.executor.call(lane, dev.probe.collect)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            log.warning("%s: unload on %s raised %s", m, dev.name, error)
        after = dev.probe.read()
        dev.ledger.release(m)
        freed = before - after if before is not None and after is not None else None
        self.metrics.unloads.labels(dev.name, m, reason).inc()
        evicted = reason in ("evicted", "oom")
        if evicted:
            self.metrics.evictions.labels(dev.name, m).inc()
        self._publish(
            "evicted" if evicted else "unloaded",
            model=m,
            device=dev.name,
            reason=reason,
            footprint=r.footprint,
            freed_measured=freed,
            error=error,
        )
        self._publish_memory(dev)
        return r.footprint

    async def _evict_idle(self: Scheduler, dev: DeviceState, keep: str, reason: str) -> int:
        """Evict every idle, unpinned model but ``keep`` (caller holds ``dev.op_lock``)."""
        victims = dev.evictable(keep)
        for v in victims:
            v.evicting = True
        freed = 0
        for v in victims:
            freed += await self._unload_now(dev, v.model, reason)
        return freed

    async def _evict_for_oom(self: Scheduler, dev: DeviceState, keep: str) -> int:
        async with dev.op_lock:
            freed = await self._evict_idle(dev, keep, "oom")
        self._kick(dev)
        return freed

    # --- explicit unload and keep-alive -------------------------------------------------------

    async def _wait_idle(self: Scheduler, dev: DeviceState, m: str) -> None:
        while dev.busy.get(m) or dev.loading == m:
            fut = asyncio.get_running_loop().create_future()
            dev.waiters.append(fut)
            await fut

    def _expired(self: Scheduler, dev: DeviceState, m: str, now: float) -> bool:
        r = dev.ledger.resident.get(m)
        entry = self.registry.entries.get(m)
        if r is None or entry is None or entry.keep_alive is None:
            return False
        if r.pinned or r.evicting or dev.busy.get(m) or dev.queue.count(m) or m in dev.draining:
            return False
        return now - r.last_used >= entry.keep_alive

    async def _expire(self: Scheduler, dev: DeviceState, m: str, now: float | None = None) -> bool:
        async with dev.op_lock:
            expired = self._expired(dev, m, time.monotonic() if now is None else now)
            if expired:
                await self._unload_now(dev, m, "keep_alive")
        self._kick(dev)
        return expired

    async def expire_idle(self: Scheduler, now: float | None = None) -> list[str]:
        """Unload every model idle longer than its keep-alive; returns their ids.

        Called by the APScheduler interval job; tests call it with a ``now`` in the future.
        """
        now = time.monotonic() if now is None else now
        due = [
            (dev, m) for dev in self.devices.values() for m in list(dev.ledger.resident) if self._expired(dev, m, now)
        ]
        return [m for dev, m in due if await self._expire(dev, m, now)]

    def _publish_memory(self: Scheduler, dev: DeviceState) -> None:
        ledger = dev.ledger
        self._publish(
            "memory",
            device=dev.name,
            budget=ledger.budget,
            used=ledger.used,
            reserved=sum(ledger.reserved.values()),
            free=None if ledger.budget is None else ledger.budget - ledger.held,
            resident=sorted(ledger.resident),
        )
