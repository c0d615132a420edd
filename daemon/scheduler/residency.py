"""Residency: which models each device holds, and every change to that.

A load starts a worker in the model's executor (:mod:`loom.daemon.workers`); an unload stops it.
Every change to what a device holds (a load with the evictions it needs, an explicit unload, a
keep-alive expiry, evicting others after an out-of-memory error) runs under the device's
``op_lock``. Victims are marked ``evicting`` when chosen, so nothing new starts on them; the
ledger is charged the estimate before a load and what was measured after it. A worker that dies
on its own is recorded as unloaded at once; the next request for its model loads it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from loom.sdk import tracing
from loom.sdk.errors import OutOfMemory, Unavailable

from ..models import ModelEntry, ModelRegistry
from ..workers import Executor, Worker, WorkerExit
from .events import EventBus
from .ledger import Residency
from .metrics import SchedulerMetrics
from .oom import is_oom
from .policy import Policy
from .state import DeviceState

log = logging.getLogger("loom.scheduler")

#: In the daemon's process the RSS also moves with unrelated allocations: a measured footprint
#: only overrides what the provider reports when it is larger by more than this.
MEASURE_NOISE = 32 * 2**20


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What bringing a model in takes. ``go``: load now, after evicting ``victims``; ``wait``:
    busy models hold the memory and will finish; ``never``: it cannot fit (``reason`` says why)."""

    verdict: Literal["go", "wait", "never"]
    need: int
    victims: tuple[Residency, ...] = ()
    reason: str = ""


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


class Residents:
    """Loads, unloads, evictions, pins and keep-alive for every device; runs on the event loop.

    ``changed(dev)`` is called whenever what ``dev`` holds changed, so queued work is looked at
    again (the dispatcher's ``kick``).
    """

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        devices: Mapping[str, DeviceState],
        policy: Policy,
        executors: Mapping[str, Executor],
        events: EventBus,
        metrics: SchedulerMetrics,
        pinned: set[str],
        slots: Callable[[ModelEntry], int],
        changed: Callable[[DeviceState], None],
    ) -> None:
        self.registry = registry
        self.devices = devices
        self.policy = policy
        self.executors = executors
        self.events = events
        self.metrics = metrics
        self.pinned = pinned
        self.slots = slots
        self.changed = changed
        self._estimates: dict[str, int] = {}
        self._stopping: set[Worker] = set()  # workers this part is stopping (not crashes)

    # --- planning -------------------------------------------------------------------------------

    def estimate(self, entry: ModelEntry) -> int:
        """Bytes admitted on: the config's override, else the provider's estimate (cached)."""
        cached = self._estimates.get(entry.id)
        if cached is None:
            if entry.vram_override is not None:
                cached = entry.vram_override
            else:
                cached = max(0, int(entry.instance().estimate_bytes() or 0))
            self._estimates[entry.id] = cached
        return cached

    def forget(self, model: str) -> None:
        """A model left the registry: drop what was cached about it."""
        self._estimates.pop(model, None)

    def plan(self, dev: DeviceState, entry: ModelEntry, now: float) -> LoadPlan:
        need = self.estimate(entry)
        ledger = dev.ledger
        if ledger.budget is None:
            return LoadPlan("go", need)
        pinned = sum(r.footprint for r in ledger.resident.values() if r.pinned and r.model != entry.id)
        if need > ledger.budget - pinned:
            why = f"model '{entry.id}' needs {_mb(need)} but the {dev.name} budget is {_mb(ledger.budget)}"
            return LoadPlan("never", need, reason=why + (f", {_mb(pinned)} of it pinned" if pinned else ""))
        free = ledger.free
        if need <= free:
            return LoadPlan("go", need)
        victims = self.policy.victims(dev.evictable(entry.id), need - free, dev.demand(), now)
        if victims is None:
            return LoadPlan("wait", need)
        return LoadPlan("go", need, tuple(victims))

    # --- loading --------------------------------------------------------------------------------

    def begin(self, dev: DeviceState, entry: ModelEntry, plan: LoadPlan) -> None:
        """Claim the device for ``plan`` (synchronously, so the dispatcher sees it at once); then
        run :meth:`load`."""
        dev.loading = entry.id
        for v in plan.victims:
            v.evicting = True

    async def load(self, dev: DeviceState, entry: ModelEntry, plan: LoadPlan) -> Residency:
        """Evict the plan's victims and load ``entry``; raises what kept it from loading."""
        try:
            async with dev.op_lock:
                for v in plan.victims:
                    # A child of the load's span when the load is traced (a no-op otherwise).
                    with tracing.span(f"evict {v.model}", {"loom.model": v.model, "loom.device": dev.name}):
                        await self.unload_now(dev, v.model, "evicted")
                return await self._load_now(dev, entry, plan.need)
        finally:
            dev.loading = None
            for v in plan.victims:
                v.evicting = False  # still resident only if its unload failed
            self.changed(dev)

    async def _load_now(self, dev: DeviceState, entry: ModelEntry, need: int) -> Residency:
        """Load ``entry`` (the caller holds ``dev.op_lock``); evict others and retry once on OOM."""
        m = entry.id
        dev.ledger.reserve(m, need)
        worker: Worker | None = None
        try:
            try:
                worker = await self._start(dev, entry)
            except Exception as e:
                if not is_oom(e):
                    raise
                self.metrics.oom.labels(dev.name, m, "load").inc()
                log.warning("%s: out of memory loading on %s (%s); evicting others and retrying", m, dev.name, e)
                if not await self.evict_idle(dev, keep=m, reason="oom"):
                    raise
                worker = await self._start(dev, entry)
            if not dev.info.available:  # its node left the cluster while it loaded
                raise Unavailable(f"model '{m}' loaded on {dev.name}, which is gone: {dev.info.reason}")
            report = worker.loaded
            footprint = self._footprint(entry, worker, need)
            await self._fit_measured(dev, entry, worker, need, footprint)
        except BaseException:
            dev.ledger.cancel(m)
            if worker is not None and not worker.exited.done():
                await self._stop(worker)
            raise
        r = Residency(
            model=m,
            device=dev.name,
            estimate=need,
            footprint=footprint,
            measured=report.measured,
            load_seconds=report.seconds,
            pinned=m in self.pinned,
        )
        dev.ledger.commit(r)
        dev.workers[m] = worker
        worker.exited.add_done_callback(lambda done: self._exited(dev, m, worker, done))
        self.metrics.loads.labels(dev.name, m).inc()
        self.metrics.load_seconds.labels(m).observe(report.seconds)
        self.events.emit(
            "loaded",
            model=m,
            device=dev.name,
            footprint=footprint,
            estimate=need,
            measured=report.measured,
            seconds=round(report.seconds, 4),
            pinned=r.pinned,
            executor=worker.executor,
            pid=worker.pid,
        )
        self.publish_memory(dev)
        return r

    async def _start(self, dev: DeviceState, entry: ModelEntry) -> Worker:
        executor = self.executors.get(entry.executor)
        if executor is None:
            raise Unavailable(f"model '{entry.id}' asks for executor {entry.executor!r}, which is not running")
        return await executor.start(entry, dev.name, self.slots(entry))

    def _footprint(self, entry: ModelEntry, worker: Worker, need: int) -> int:
        """What the ledger charges: the override or what the provider reports, or what was
        measured when that is more (a worker process is measured whole, so exactly)."""
        report = worker.loaded
        if entry.vram_override is not None:
            reported = entry.vram_override
        else:
            reported = need if report.reported is None else report.reported
        measured = report.measured
        noise = 0 if report.whole else MEASURE_NOISE
        if measured is not None and measured > reported + noise:
            return measured
        return reported

    async def _fit_measured(self, dev: DeviceState, entry: ModelEntry, worker: Worker, need: int, footprint: int):
        """A model that turned out bigger than its estimate: evict idle others, or give up."""
        ledger = dev.ledger
        if ledger.budget is None or footprint <= need:
            return
        shortfall = ledger.held - need + footprint - ledger.budget
        if shortfall <= 0:
            return
        victims = self.policy.victims(dev.evictable(entry.id), shortfall, dev.demand(), time.monotonic())
        if victims is None:
            raise OutOfMemory(
                f"model '{entry.id}' holds {_mb(footprint)} once loaded (estimated {_mb(need)}); "
                f"that does not fit the {dev.name} budget of {_mb(ledger.budget)} next to pinned or busy models"
            )
        for v in victims:
            v.evicting = True
        for v in victims:
            await self.unload_now(dev, v.model, "evicted")

    # --- unloading ------------------------------------------------------------------------------

    async def _stop(self, worker: Worker) -> WorkerExit:
        self._stopping.add(worker)
        try:
            return await worker.stop()
        finally:
            self._stopping.discard(worker)

    async def unload_now(self, dev: DeviceState, m: str, reason: str) -> int:
        """Unload resident model ``m`` (caller holds ``dev.op_lock``); returns the bytes freed."""
        r = dev.ledger.resident.get(m)
        if r is None:
            return 0
        r.evicting = True
        worker = dev.workers.get(m)
        exit_ = None
        if worker is not None:
            exit_ = await self._stop(worker)
        dev.workers.pop(m, None)
        if dev.ledger.release(m) is None:
            return 0  # it crashed while stopping: recorded as such
        self._record_unload(dev, r, reason, exit_)
        return r.footprint

    def _record_unload(self, dev: DeviceState, r: Residency, reason: str, exit_: WorkerExit | None) -> None:
        m = r.model
        self.metrics.unloads.labels(dev.name, m, reason).inc()
        evicted = reason in ("evicted", "oom")
        if evicted:
            self.metrics.evictions.labels(dev.name, m).inc()
        fields = {}
        if exit_ is not None and exit_.reason != "stopped":
            fields = {"signal": exit_.signal, "returncode": exit_.returncode}
        self.events.emit(
            "evicted" if evicted else "unloaded",
            model=m,
            device=dev.name,
            reason=reason,
            footprint=r.footprint,
            freed_measured=None if exit_ is None else exit_.freed,
            error=(exit_.detail or None) if exit_ is not None else None,
            **fields,
        )
        self.publish_memory(dev)

    def lost(self, dev: DeviceState, m: str, worker: Worker, reason: str, why: str = "killed") -> None:
        """Loom killed ``worker`` (a hung call; ``why`` "killed"), or its node left the cluster
        (``why`` "node_lost"): record the model unloaded now, before the worker is reaped, so
        the next request loads it again rather than landing on the dying worker."""
        if dev.workers.get(m) is not worker:
            return
        del dev.workers[m]
        r = dev.ledger.release(m)
        if r is not None:
            signal = "SIGKILL" if worker.pid is not None and why == "killed" else None
            self._record_unload(dev, r, why, WorkerExit(reason="killed", signal=signal, detail=reason))
        self.changed(dev)

    def _exited(self, dev: DeviceState, m: str, worker: Worker, done: asyncio.Future) -> None:
        """A worker ended. Unless this part stopped it, it crashed or was killed: the model is no
        longer resident (whatever was running on it has failed), and queued work reloads it."""
        if worker in self._stopping or dev.workers.get(m) is not worker or done.cancelled():
            return
        exit_: WorkerExit = done.result()
        del dev.workers[m]
        r = dev.ledger.release(m)
        if r is None:
            return
        reason = "crashed" if exit_.reason == "crashed" else "killed"
        log.warning("model %s on %s: %s", m, dev.name, exit_.detail)
        self._record_unload(dev, r, reason, exit_)
        self.changed(dev)

    async def evict_idle(self, dev: DeviceState, keep: str, reason: str) -> int:
        """Evict every idle, unpinned model but ``keep`` (caller holds ``dev.op_lock``)."""
        victims = dev.evictable(keep)
        for v in victims:
            v.evicting = True
        freed = 0
        for v in victims:
            freed += await self.unload_now(dev, v.model, reason)
        return freed

    async def evict_for_oom(self, dev: DeviceState, keep: str) -> int:
        async with dev.op_lock:
            freed = await self.evict_idle(dev, keep, "oom")
        self.changed(dev)
        return freed

    async def unload(self, dev: DeviceState, m: str) -> bool:
        """Unload ``m`` once its running work is done; False when it was not resident."""
        if m not in dev.ledger.resident and dev.loading != m:
            return False
        dev.draining.add(m)
        try:
            await self._wait_idle(dev, m)
            async with dev.op_lock:
                if m in dev.ledger.resident and not dev.busy.get(m):
                    await self.unload_now(dev, m, "admin")
                    return True
                return False
        finally:
            dev.draining.discard(m)
            self.changed(dev)

    async def _wait_idle(self, dev: DeviceState, m: str) -> None:
        while dev.busy.get(m) or dev.loading == m:
            fut = asyncio.get_running_loop().create_future()
            dev.waiters.append(fut)
            await fut

    async def unload_all(self, reason: str) -> None:
        """At shutdown: unload every model (a device whose load would not stop is skipped; its
        worker is ended by the executor's close)."""
        for dev in self.devices.values():
            if dev.op_lock.locked():
                continue
            async with dev.op_lock:
                for m in list(dev.ledger.resident):
                    await self.unload_now(dev, m, reason)

    # --- pins and keep-alive --------------------------------------------------------------------

    def set_pinned(self, dev: DeviceState | None, m: str, pinned: bool) -> None:
        """Pin or unpin ``m``, and its residency on ``dev`` (None: it is resident nowhere)."""
        (self.pinned.add if pinned else self.pinned.discard)(m)
        r = dev.ledger.resident.get(m) if dev is not None else None
        if r is not None:
            r.pinned = pinned

    def expired(self, dev: DeviceState, m: str, now: float) -> bool:
        r = dev.ledger.resident.get(m)
        entry = self.registry.entries.get(m)
        if r is None or entry is None:
            return False
        limit = r.keep_alive if r.keep_alive is not None else entry.keep_alive
        if limit is None or r.pinned or r.evicting or dev.busy.get(m) or dev.queue.count(m) or m in dev.draining:
            return False
        return now - r.last_used >= limit

    def set_keep_alive(self, dev: DeviceState, m: str, seconds: float) -> bool:
        """Keep ``m`` for ``seconds`` idle from now on (until it unloads); False: not resident."""
        r = dev.ledger.resident.get(m)
        if r is None:
            return False
        r.keep_alive = seconds
        return True

    async def expire(self, dev: DeviceState, m: str, now: float | None = None) -> bool:
        async with dev.op_lock:
            expired = self.expired(dev, m, time.monotonic() if now is None else now)
            if expired:
                await self.unload_now(dev, m, "keep_alive")
        self.changed(dev)
        return expired

    async def expire_idle(self, now: float | None = None) -> list[str]:
        """Unload every model idle longer than its keep-alive; returns their ids."""
        now = time.monotonic() if now is None else now
        due = [
            (dev, m) for dev in self.devices.values() for m in list(dev.ledger.resident) if self.expired(dev, m, now)
        ]
        return [m for dev, m in due if await self.expire(dev, m, now)]

    # --- seeing it ------------------------------------------------------------------------------

    def worker(self, dev: DeviceState, m: str) -> Worker | None:
        return dev.workers.get(m)

    def publish_memory(self, dev: DeviceState) -> None:
        ledger = dev.ledger
        self.events.emit(
            "memory",
            device=dev.name,
            budget=ledger.budget,
            used=ledger.used,
            reserved=sum(ledger.reserved.values()),
            free=None if ledger.budget is None else ledger.budget - ledger.held,
            resident=sorted(ledger.resident),
        )
