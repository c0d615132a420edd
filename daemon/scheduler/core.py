"""The scheduler: what is resident, what runs next, on which device.

Every provider call goes through :meth:`Scheduler.run` or :meth:`Scheduler.stream` and becomes a
:class:`WorkItem` on its device's queue. A dispatcher per device (run on the event loop whenever
something changes) asks the policy for the order, starts what may start, and starts a load (with
the evictions it needs) when the next item's model is not resident. Calls run on the device's
lane of the executor: sync functions and generators on its thread, ``async`` results on the loop.

The pieces: ``residency`` (loads and evictions), ``execution`` (running calls), ``snapshot``
(the admin view) are mixed into :class:`Scheduler`; ``policy``, ``ledger``, ``queues``,
``devices``, ``executor``, ``events`` and ``metrics`` are what it uses.

Ids: each item has an id (``wk_...``); it is set on ``ctx.work_id`` and in the
:data:`current_work_id` context variable, and :meth:`Scheduler.cancel` takes it.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from loom.sdk.calls import Call
from loom.sdk.errors import Cancelled, OutOfMemory, QueueFull, Unavailable
from loom.sdk.protocols import Provider, RunContext

from .. import credentials
from ..config import Config
from ..models import ModelEntry, ModelRegistry
from .devices import REMOTE, discover, normalize
from .events import EventBus
from .executor import Executor, ThreadExecutor
from .ledger import Ledger, probe_for
from .execution import END, ExecutionOps
from .metrics import SchedulerMetrics
from .oom import as_loom_error
from .policy import Decision, Policy, make_policy
from .queues import Priority, State, WorkItem
from .residency import DeviceState, ResidencyOps
from .snapshot import SnapshotOps

__all__ = ["Priority", "Scheduler", "current_work_id"]

log = logging.getLogger("loom.scheduler")

#: The id of the work item most recently submitted from this context (the API's response header).
current_work_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("loom_work_id", default=None)


def _noop(provider: Provider, ctx: RunContext) -> None:
    return None


class Scheduler(ResidencyOps, ExecutionOps, SnapshotOps):
    def __init__(
        self,
        config: Config,
        registry: ModelRegistry,
        *,
        policy: str | Policy | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        if policy is None:
            policy = config.scheduler.policy
        self.policy = make_policy(policy, config.scheduler.max_age)
        self.executor: Executor = executor or ThreadExecutor()
        self.events = EventBus()
        self.metrics = SchedulerMetrics(self)
        infos, self._auto = discover(config, {e.spec.device for e in registry if e.local})
        self.devices: dict[str, DeviceState] = {
            name: DeviceState(info, Ledger(name, info.budget), probe_for(info.kind, info.index))
            for name, info in infos.items()
        }
        self._pinned: set[str] = {e.id for e in registry if e.config.pin}
        self._items: dict[str, WorkItem] = {}
        self._seq = itertools.count()
        self._estimates: dict[str, int] = {}
        self._run_seconds: dict[str, float] = {}  # moving average per model, for Retry-After
        self._tasks: set[asyncio.Task] = set()
        self._aps: Any = None
        self._closed = False
        for entry in registry:
            dev = self.devices.get(self.device_of(entry))
            if dev is not None:
                self.executor.configure(self._lane(dev, entry), self.slots(entry))

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the keep-alive job (APScheduler) and load pinned models in the background."""
        self._closed = False
        self.events._bind(again=True)
        if self._aps is None:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            quiet = logging.getLogger("apscheduler.executors")  # it logs every run at INFO
            if quiet.level == logging.NOTSET:
                quiet.setLevel(logging.WARNING)
            self._aps = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=datetime.timezone.utc)
            self._aps.add_job(
                self.expire_idle,
                "interval",
                seconds=max(0.01, self.config.scheduler.keep_alive_interval),
                id="loom-keep-alive",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            self._aps.start()
        for m in sorted(self._pinned):
            entry = self.registry.entries.get(m)
            if entry is not None:
                self._spawn(self._preload(entry))

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._aps is not None:
            try:
                self._aps.shutdown(wait=False)
            except Exception:  # not running
                pass
            self._aps = None
        for item in list(self._items.values()):
            if item.state is State.QUEUED:
                self._drop(item, Unavailable("Loom is shutting down"), "cancelled", reason="shutdown")
            else:
                item.ctx.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        for dev in self.devices.values():
            if dev.op_lock.locked():
                continue  # a load that would not stop; its thread dies with the process
            async with dev.op_lock:
                for m in list(dev.ledger.resident):
                    await self._unload_now(dev, m, "shutdown")
        self.executor.shutdown()
        self.events.close()

    # --- models added and removed while running (POST / DELETE /admin/models) --------------------

    def add_model(self, entry: ModelEntry) -> None:
        """Take on a model the registry just gained: its executor lane, and its pin (loaded now)."""
        dev = self.devices.get(self.device_of(entry))
        if dev is None:
            raise Unavailable(
                f"model '{entry.id}' is placed on {self.device_of(entry)}, which Loom did not set up "
                "at start; restart Loom to use a new device"
            )
        self.executor.configure(self._lane(dev, entry), self.slots(entry))
        if entry.config.pin:
            self._pinned.add(entry.id)
            if self._aps is not None:  # started: load it now, as start() does for pinned models
                self._spawn(self._preload(entry))

    async def remove_model(self, entry: ModelEntry) -> None:
        """Let go of a model before the registry drops it: its queued work fails, running work
        finishes, then it is unloaded. The caller removes it from the registry right after."""
        gone = Unavailable(f"model '{entry.id}' was removed")
        for item in [i for i in self._items.values() if i.entry is entry and i.state is State.QUEUED]:
            self._drop(item, gone, "cancelled", reason="model_removed")
        dev = self.devices.get(self.device_of(entry))
        if dev is not None:
            self._set_pinned(dev, entry.id, False)
            await self.unload(entry)
        # Work that arrived while it drained: the registry still named it until now.
        for item in [i for i in self._items.values() if i.entry is entry and i.state is State.QUEUED]:
            self._drop(item, gone, "cancelled", reason="model_removed")
        self._estimates.pop(entry.id, None)
        self._run_seconds.pop(entry.id, None)

    async def _preload(self, entry: ModelEntry) -> None:
        try:
            await self.load(entry)
        except Exception as e:
            log.warning("could not load pinned model %s: %s", entry.id, e)

    # --- devices and slots ---------------------------------------------------------------------

    def device_of(self, entry: ModelEntry) -> str:
        if not entry.local:
            return REMOTE
        device = entry.spec.device or "auto"
        return self._auto if device == "auto" else normalize(device)

    def _dev(self, entry: ModelEntry) -> DeviceState:
        name = self.device_of(entry)
        dev = self.devices.get(name)
        if dev is None:
            raise Unavailable(f"model '{entry.id}' is placed on {name}, which Loom does not know")
        return dev

    def _lane(self, dev: DeviceState, entry: ModelEntry) -> str:
        return f"{dev.name}/{entry.id}" if dev.parallel else dev.name

    def slots(self, entry: ModelEntry) -> int:
        """Items of this model that may run at once: the config's, else 1 (local) or 16 (remote)."""
        return entry.config.concurrency or (1 if entry.local else 16)

    def is_loaded(self, entry: ModelEntry) -> bool:
        dev = self.devices.get(self.device_of(entry))
        return dev is not None and entry.id in dev.ledger.resident

    def queue_state(self, entry: ModelEntry) -> tuple[bool, int]:
        """(every slot of ``entry`` is taken, how many of its items wait)."""
        dev = self._dev(entry)
        return dev.busy.get(entry.id, 0) >= self.slots(entry), self._waiting(dev, entry)

    # --- running ---------------------------------------------------------------------------------

    async def run(
        self,
        entry: ModelEntry,
        call: Call | Callable[[Provider, RunContext], Any],
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> Any:
        """Run ``call`` (a :class:`~loom.sdk.calls.Call`, or in process a function of
        ``(provider, ctx)``) once its model is resident and a slot is free.

        A generator (or async generator) result is drained where it runs and returned as a list.
        """
        item = self._submit(entry, call, priority, ctx)
        try:
            await self._wait_started(item)
            return await asyncio.shield(item.done)
        except asyncio.CancelledError:
            self._abandon(item)
            raise

    async def stream(
        self,
        entry: ModelEntry,
        call: Call | Callable[[Provider, RunContext], Any],
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> AsyncIterator[Any]:
        """Iterate ``call(provider, ctx)`` (a generator or async generator) chunk by chunk.

        Closing the iterator early (a client that disconnects) cancels the work.
        """
        item = self._submit(entry, call, priority, ctx, stream=True)
        try:
            await self._wait_started(item)
            while True:
                tag, value = await item.chunks.get()
                if tag == END:
                    if value is not None:
                        raise value
                    return
                yield value
        finally:
            self._abandon(item)  # a no-op once the item is done

    async def load(self, entry: ModelEntry) -> Provider:
        """Make ``entry`` resident (evicting others as needed) and return its provider."""
        item = self._submit(entry, _noop, Priority.INTERACTIVE, None, kind="load")
        await self._wait_started(item)
        return entry.instance()

    async def unload(self, entry: ModelEntry) -> bool:
        """Unload ``entry`` once its running work is done; False when it was not resident."""
        dev = self._dev(entry)
        m = entry.id
        if m not in dev.ledger.resident and dev.loading != m:
            return False
        dev.draining.add(m)
        try:
            await self._wait_idle(dev, m)
            async with dev.op_lock:
                if m in dev.ledger.resident and not dev.busy.get(m):
                    await self._unload_now(dev, m, "admin")
                    return True
                return False
        finally:
            dev.draining.discard(m)
            self._kick(dev)

    async def pin(self, entry: ModelEntry, pinned: bool = True) -> dict:
        """Pin (never evicted, no keep-alive; loaded now) or unpin a model."""
        dev = self._dev(entry)
        m = entry.id
        was = m in self._pinned
        self._set_pinned(dev, m, pinned)
        if pinned:
            try:
                await self.load(entry)
            except BaseException:
                self._set_pinned(dev, m, was)
                raise
        self._publish("pinned", model=m, device=dev.name, pinned=pinned)
        self._kick(dev)
        return self.model_state(entry)

    def _set_pinned(self, dev: DeviceState, m: str, pinned: bool) -> None:
        (self._pinned.add if pinned else self._pinned.discard)(m)
        r = dev.ledger.resident.get(m)
        if r is not None:
            r.pinned = pinned

    def cancel(self, item_id: str) -> bool:
        """Cancel queued (removed, never run) or running (``ctx.cancel()``) work by id."""
        item = self._items.get(item_id)
        if item is None or item.internal:
            return False
        if item.state is State.QUEUED:
            self._drop(item, Cancelled(f"work {item_id} was cancelled"), "cancelled", reason="by_id")
        else:
            item.ctx.cancel()
        return True

    # --- admission and waiting -------------------------------------------------------------------

    def _submit(self, entry, call, priority, ctx, *, stream: bool = False, kind: str = "run") -> WorkItem:
        if self._closed:
            raise Unavailable("Loom is shutting down")
        dev = self._dev(entry)
        if not dev.info.available:
            raise Unavailable(f"model '{entry.id}' is placed on {dev.name}, which is not available: {dev.info.reason}")
        if kind == "run":
            limit = entry.config.max_queue or self.config.daemon.limits.max_queue
            if self._waiting(dev, entry) >= limit:
                self.metrics.rejected.labels(entry.id, "queue_full").inc()
                raise QueueFull(
                    f"The queue for model '{entry.id}' is full ({limit} waiting); retry later",
                    retry_after=self._retry_after(dev, entry),
                )
        if ctx is None:
            ctx = RunContext(device=dev.name)
        ctx.device = dev.name
        if not ctx.credentials:  # a /v1 request's upstream keys (X-...-API-Key), for this call only
            ctx.credentials = credentials.current()
        item = WorkItem(
            entry=entry,
            device=dev.name,
            priority=Priority(priority),
            call=call,
            ctx=ctx,
            seq=next(self._seq),
            stream=stream,
            kind=kind,
        )
        ctx.work_id = item.id
        current_work_id.set(item.id)
        if kind == "run":
            self.policy.arrived(entry.id, item.enqueued)
        dev.queue.push(item)
        self._items[item.id] = item
        if not item.internal:
            self._publish("queued", item, depth=dev.queue.count(entry.id))
        self._kick(dev)
        return item

    def _waiting(self, dev: DeviceState, entry: ModelEntry) -> int:
        """Queued items of ``entry`` beyond its free slots (those will start as soon as it is
        dispatched): what admission control bounds."""
        free = max(0, self.slots(entry) - dev.busy.get(entry.id, 0))
        return max(0, dev.queue.count(entry.id) - free)

    def _retry_after(self, dev: DeviceState, entry: ModelEntry) -> float:
        per_item = self._run_seconds.get(entry.id, 1.0)
        return max(1.0, per_item * dev.queue.count(entry.id) / self.slots(entry))

    async def _wait_started(self, item: WorkItem) -> None:
        timeout = self.config.daemon.limits.queue_timeout
        try:
            await asyncio.wait([item.started], timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(item)
            raise
        if not item.started.done():
            error = Unavailable(f"Waited {timeout:g}s in the queue for model '{item.model}'; try again later")
            self._drop(item, error, "failed", reason="queue_timeout")
            raise error
        item.started.result()  # raises what kept it from starting

    def _abandon(self, item: WorkItem, reason: str = "client went away") -> None:
        if item.state is State.QUEUED:
            self._drop(item, Cancelled(f"cancelled: {reason}"), "cancelled", reason=reason)
        elif item.state is State.RUNNING:
            item.ctx.cancel()

    def _drop(self, item: WorkItem, error: Exception, event: str, **fields) -> None:
        """End a queued item without running it."""
        dev = self.devices[item.device]
        dev.queue.remove(item)
        item.state = State.DONE
        item.outcome = "cancelled" if event == "cancelled" else "failed"
        self._items.pop(item.id, None)
        for fut in (item.started, item.done):
            if not fut.done():
                fut.set_exception(error)
        if not item.internal:
            self.metrics.items.labels(item.model, item.outcome).inc()
            self._publish(event, item, error=getattr(error, "message", str(error)), ran=False, **fields)
        self._kick(dev)

    # --- dispatch ----------------------------------------------------------------------------

    def _kick(self, dev: DeviceState) -> None:
        """Dispatch ``dev`` soon (once, however many things changed in this turn of the loop)."""
        if not dev.dispatch_pending:
            dev.dispatch_pending = True
            asyncio.get_running_loop().call_soon(self._dispatch, dev)

    def _dispatch(self, dev: DeviceState) -> None:
        dev.dispatch_pending = False
        waiters, dev.waiters = dev.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if self._closed:
            return
        while True:
            now = time.monotonic()
            for item in self.policy.order(list(dev.queue), dev.ledger.resident, now):
                decision = self._decide(dev, item, now)
                if decision in (Decision.START, Decision.DONE, Decision.LOADING):
                    break  # state changed: order again
                if self.policy.blocks(decision):
                    return
            else:
                return

    def _decide(self, dev: DeviceState, item: WorkItem, now: float) -> Decision:
        m, entry = item.model, item.entry
        if m in dev.draining:
            return Decision.WAIT_MODEL
        r = dev.ledger.resident.get(m)
        if r is not None and not r.evicting:
            if item.kind == "load":
                self._settle(dev, item)
                return Decision.DONE
            if dev.busy.get(m, 0) >= self.slots(entry):
                return Decision.WAIT_MODEL
            if not dev.parallel and dev.active() - {m}:
                return Decision.WAIT_DEVICE
            self._start(dev, item, now)
            return Decision.START
        if dev.loading == m:
            return Decision.WAIT_MODEL
        if r is not None or dev.loading is not None or dev.op_lock.locked():
            return Decision.WAIT_DEVICE
        if not dev.parallel and dev.active():
            return Decision.WAIT_DEVICE
        try:
            verdict, victims, need, why = self.plan_load(dev, entry, now)
        except Exception as e:  # the provider could not even estimate (a missing file, ...)
            self._drop(item, as_loom_error(e, m, dev.name, "estimate"), "failed", stage="estimate")
            return Decision.DONE
        if verdict == "never":
            self._drop(item, OutOfMemory(why), "failed", stage="admission")
            return Decision.DONE
        if verdict == "wait":
            return Decision.WAIT_DEVICE
        hold = self.policy.grace(item, victims, now)
        if hold > 0:
            self._arm(dev, hold)
            return Decision.WAIT_GRACE
        self.start_load(dev, item, victims, need)
        return Decision.LOADING

    def _arm(self, dev: DeviceState, delay: float) -> None:
        if dev.grace_timer is not None:
            dev.grace_timer.cancel()
        dev.grace_timer = asyncio.get_running_loop().call_later(delay, self._kick, dev)

    def _settle(self, dev: DeviceState, item: WorkItem) -> None:
        """An explicit load whose model is resident: done without running anything."""
        dev.queue.remove(item)
        item.state = State.DONE
        item.outcome = "finished"
        self._items.pop(item.id, None)
        item.started.set_result(None)
        item.done.set_result(None)

    def _start(self, dev: DeviceState, item: WorkItem, now: float) -> None:
        m = item.model
        dev.queue.remove(item)
        item.state = State.RUNNING
        item.started_at = now
        dev.running[item.id] = item
        dev.busy[m] += 1
        r = dev.ledger.resident[m]
        r.last_used = now
        r.last_priority = int(item.priority)
        item.started.set_result(None)
        waited = now - item.enqueued
        self.metrics.wait.labels(dev.name, item.priority.name.lower()).observe(waited)
        self._publish("started", item, waited=round(waited, 4))
        self._spawn(self._execute(dev, item))

    # --- plumbing --------------------------------------------------------------------------------

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("scheduler task failed: %s: %s", type(e).__name__, e, exc_info=e)

    def _publish(self, type: str, item: WorkItem | None = None, **fields: Any) -> None:
        base = {"model": None, "device": None, "item": None}
        if item is not None:
            base = {"model": item.model, "device": item.device, "item": item.id, "priority": item.priority.name.lower()}
        self.events.publish(type, **{**base, **fields})
