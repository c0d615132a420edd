"""Queues and dispatch: admission, the per-device queues, and deciding what starts.

Every provider call becomes a :class:`WorkItem` on its device's queue. A dispatch pass per device
(run on the event loop whenever something changed) asks the policy for the order, starts what may
start on its model's worker, and asks residency for a load (with the evictions it needs) when the
next item's model is not resident. Each item is settled exactly once: finished, failed or
cancelled, started or not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from loom.sdk.errors import Cancelled, LoomError, OutOfMemory, ProviderTimeout, QueueFull, Unavailable, WorkerCrashed
from loom.sdk.protocols import RunContext

from .. import credentials, quotas
from ..config import Config
from ..models import ModelEntry
from .events import PRIORITY_NAMES, EventBus
from .execution import END, Execution
from .metrics import SchedulerMetrics
from .oom import as_loom_error, is_oom
from .policy import Decision, FairShare, Policy
from .queues import Priority, State, WorkItem, current_principal, fail, succeed
from .residency import Residents
from .state import DeviceState
from .tasks import TaskSet

if TYPE_CHECKING:
    from ..tracing import Tracing

log = logging.getLogger("loom.scheduler")


class Dispatcher:
    def __init__(
        self,
        *,
        config: Config,
        devices: Mapping[str, DeviceState],
        policy: Policy,
        residents: Residents,
        execution: Execution,
        events: EventBus,
        metrics: SchedulerMetrics,
        tasks: TaskSet,
        slots: Callable[[ModelEntry], int],
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: the daemon's tracer when traces are on (each item then carries a
        :class:`~loom.daemon.tracing.work.WorkTrace`); None costs an ``is None`` check per stage."""
        self.config = config
        self.devices = devices
        self.policy = policy
        self.residents = residents
        self.execution = execution
        self.events = events
        self.metrics = metrics
        self.tasks = tasks
        self.slots = slots
        self.tracing = tracing
        self.fair = FairShare()
        self.items: dict[str, WorkItem] = {}
        self.closed = False
        self._seq = itertools.count()
        self._run_seconds: dict[str, float] = {}  # moving average per model, for Retry-After

    # --- admission ------------------------------------------------------------------------------

    def submit(
        self,
        dev: DeviceState,
        entry: ModelEntry,
        call: Any,
        priority: Priority,
        ctx: RunContext | None,
        *,
        stream: bool = False,
        collect: bool = False,
        kind: str = "run",
    ) -> WorkItem:
        if self.closed:
            raise Unavailable("Loom is shutting down")
        if not dev.info.available:
            raise Unavailable(f"model '{entry.id}' is placed on {dev.name}, which is not available: {dev.info.reason}")
        position = 0
        if kind == "run":
            limit = entry.config.max_queue or self.config.daemon.limits.max_queue
            free = max(0, self.slots(entry) - dev.busy.get(entry.id, 0))
            queued = dev.queue.count(entry.id)
            if queued - free >= limit:
                self.metrics.rejected.labels(entry.id, "queue_full").inc()
                raise QueueFull(
                    f"The queue for model '{entry.id}' is full ({limit} waiting); retry later",
                    retry_after=self._retry_after(dev, entry),
                )
            # Its place among the model's work waiting for a slot (1: next); 0 when a slot is
            # free for it. Later, more urgent work may still go before it.
            position = queued - free + 1 if queued >= free else 0
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
            collect=collect,
            kind=kind,
            position=position,
            principal=self.metrics.principal(current_principal.get()),
            meter=quotas.current_meter(),  # the submitting request's principal's tokens
        )
        ctx.work_id = item.id
        self.fair.stamp(item)
        if self.tracing is not None:
            item.trace = self.tracing.work(item, position)
        if kind == "run":
            self.policy.arrived(entry.id, item.enqueued)
            self.metrics.principal_requests.labels(item.principal).inc()
        dev.queue.push(item)
        self.items[item.id] = item
        if not item.internal:
            self.events.emit("queued", item, depth=dev.queue.count(entry.id))
        if not (kind == "run" and self._busy_in_every_slot(dev, entry)):
            # A run of a model busy in every slot can start nothing by arriving (it frees nothing
            # and waits itself): the pass after the next run ends picks it up.
            self.kick(dev)
        return item

    def _busy_in_every_slot(self, dev: DeviceState, entry: ModelEntry) -> bool:
        m = entry.id
        r = dev.ledger.resident.get(m)
        return r is not None and not r.evicting and m not in dev.draining and dev.busy.get(m, 0) >= self.slots(entry)

    def waiting(self, dev: DeviceState, entry: ModelEntry) -> int:
        """Queued items of ``entry`` beyond its free slots (those will start as soon as it is
        dispatched): what admission control bounds."""
        free = max(0, self.slots(entry) - dev.busy.get(entry.id, 0))
        return max(0, dev.queue.count(entry.id) - free)

    def run_seconds(self, model: str) -> float | None:
        """How long a call of ``model`` ran lately (a moving average); None before one has."""
        return self._run_seconds.get(model)

    def _retry_after(self, dev: DeviceState, entry: ModelEntry) -> float:
        per_item = self._run_seconds.get(entry.id, 1.0)
        return max(1.0, per_item * dev.queue.count(entry.id) / self.slots(entry))

    async def wait_started(self, item: WorkItem) -> None:
        """Wait until ``item`` starts; raises what kept it from starting, or Unavailable after
        ``queue_timeout``. One timer that drops the item, not ``asyncio.wait`` (its own future,
        callbacks and timer on every request)."""
        started = item.started
        if started.done():
            started.result()  # raises what kept it from starting
            return
        timeout = self.config.daemon.limits.queue_timeout
        timer = asyncio.get_running_loop().call_later(timeout, self._timed_out, item, timeout) if timeout else None
        try:
            # shield: a client that goes away cancels this wait, never the item's own future
            # (a dispatch pass may be about to start it). It raises what kept the item from starting.
            await asyncio.shield(started)
        except asyncio.CancelledError:
            self.abandon(item)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def wait_done(self, item: WorkItem) -> Any:
        """``item``'s result once it has run (raising what it raised, or what kept it from
        starting); ``queue_timeout`` applies while it waits to start, as in :meth:`wait_started`.
        One wait where a caller of :meth:`wait_started` then waiting for the result has two (the
        task wakes once per request, not twice)."""
        timeout = self.config.daemon.limits.queue_timeout
        timer = asyncio.get_running_loop().call_later(timeout, self._timed_out, item, timeout) if timeout else None
        try:
            # No shield: only this caller waits for ``done``, so a client that goes away may
            # cancel it; the item is abandoned here and whatever ends it later finds it settled.
            return await item.done
        except asyncio.CancelledError:
            self.abandon(item)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _timed_out(self, item: WorkItem, timeout: float) -> None:
        if item.state is State.QUEUED:
            error = Unavailable(
                f"Waited {timeout:g}s in the queue for model '{item.model}'; try again later", code="queue_timeout"
            )
            self.drop(item, error, "failed", reason="queue_timeout")

    # --- ending work that did not run -------------------------------------------------------------

    def abandon(self, item: WorkItem, reason: str = "client went away") -> None:
        if item.state is State.QUEUED:
            self.drop(item, Cancelled(f"cancelled: {reason}"), "cancelled", reason=reason)
        elif item.state is State.RUNNING:
            item.ctx.cancel()

    def cancel(self, item_id: str) -> bool:
        """Cancel queued (removed, never run) or running (``ctx.cancel()``) work by id."""
        item = self.items.get(item_id)
        if item is None or item.internal:
            return False
        if item.state is State.QUEUED:
            self.drop(item, Cancelled(f"work {item_id} was cancelled"), "cancelled", reason="by_id")
        else:
            item.ctx.cancel()
        return True

    def drop(self, item: WorkItem, error: Exception, event: str, **fields) -> None:
        """End a queued item without running it."""
        dev = self.devices[item.device]
        dev.queue.remove(item)
        item.state = State.DONE
        item.outcome = "cancelled" if event == "cancelled" else "failed"
        self.items.pop(item.id, None)
        fail(item.started, error)
        fail(item.done, error)
        if item.trace is not None:
            item.trace.dropped(error, item.outcome)
        if not item.internal:
            self.metrics.items.labels(item.model, item.outcome).inc()
            self.events.emit(event, item, error=getattr(error, "message", str(error)), ran=False, **fields)
        self.kick(dev)

    def move(self, item: WorkItem, to: DeviceState) -> None:
        """Queue a waiting item on another device (its node left the cluster)."""
        source = self.devices[item.device]
        source.queue.remove(item)
        self.events.emit("moved", item, to=to.name)
        item.device = to.name
        item.ctx.device = to.name
        to.queue.push(item)
        self.kick(to)
        self.kick(source)

    def drop_model(self, entry: ModelEntry, error: Exception) -> None:
        """End every queued item of ``entry`` (a model being removed)."""
        for item in [i for i in self.items.values() if i.entry is entry and i.state is State.QUEUED]:
            self.drop(item, error, "cancelled", reason="model_removed")

    def forget(self, model: str) -> None:
        self._run_seconds.pop(model, None)

    def shutdown(self) -> None:
        """Refuse new work, end queued items, and cancel running ones."""
        self.closed = True
        for item in list(self.items.values()):
            if item.state is State.QUEUED:
                self.drop(item, Unavailable("Loom is shutting down"), "cancelled", reason="shutdown")
            else:
                item.ctx.cancel()

    # --- dispatch -------------------------------------------------------------------------------

    def kick(self, dev: DeviceState) -> None:
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
        if self.closed:
            return
        while True:
            now = time.monotonic()
            for item in self.policy.order(self._candidates(dev, now), dev.ledger.resident, now):
                decision = self._decide(dev, item, now)
                if decision is Decision.START:
                    # Starting an item moves no other in the order (that depends on residency,
                    # priority, age and arrival) and frees nothing an earlier one waits for, so
                    # the pass goes on down the same order: sorting again for every start made a
                    # pass quadratic in the queue. The candidates hold no more of a model's runs
                    # than it had free slots, so none left in the order waits for this one's.
                    continue
                if decision in (Decision.DONE, Decision.LOADING):
                    break  # residency or the queue changed: order again
                if self.policy.blocks(decision):
                    return
            else:
                return

    def _candidates(self, dev: DeviceState, now: float) -> list[WorkItem]:
        """The queued items a pass should order: all of them when the policy holds everything
        behind a waiting model (FIFO); otherwise (affinity) none of a resident model busy in
        every slot, and of a resident model with ``n`` free slots only the ``n`` it would start
        first. ``_decide`` would answer WAIT_MODEL for the others and the pass would go on past
        them, so leaving them out changes nothing but the cost: with 32 clients of a one-slot
        model every pass sorted and scanned 31 items that could not start."""
        queue = dev.queue
        if len(queue) < 2 or self.policy.blocks(Decision.WAIT_MODEL):
            return list(queue)
        out = queue.internal()
        resident = dev.ledger.resident
        for m, runs in queue.runs_by_model():
            r = resident.get(m)
            if r is None or r.evicting:
                out.extend(runs.values())
                continue
            free = self.slots(next(iter(runs.values())).entry) - dev.busy.get(m, 0)
            if free >= len(runs):
                out.extend(runs.values())
            elif free > 0:
                out.extend(self.policy.best(list(runs.values()), free, resident, now))
        return out

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
            plan = self.residents.plan(dev, entry, now)
        except Exception as e:  # the provider could not even estimate (a missing file, ...)
            self.drop(item, as_loom_error(e, m, dev.name, "estimate"), "failed", stage="estimate")
            return Decision.DONE
        if plan.verdict == "never":
            self.drop(item, OutOfMemory(plan.reason), "failed", stage="admission")
            return Decision.DONE
        if plan.verdict == "wait":
            return Decision.WAIT_DEVICE
        hold = self.policy.grace(item, plan.victims, now)
        if hold > 0:
            self._arm(dev, hold)
            return Decision.WAIT_GRACE
        self.residents.begin(dev, entry, plan)
        self.tasks.spawn(self._load(dev, item, plan))
        return Decision.LOADING

    async def _load(self, dev: DeviceState, item: WorkItem, plan) -> None:
        entry = item.entry
        try:
            if item.trace is None:
                await self.residents.load(dev, entry, plan)
            else:
                with item.trace.loading(entry.id, dev.name, [v.model for v in plan.victims]):
                    await self.residents.load(dev, entry, plan)
        except BaseException as e:
            err = as_loom_error(e, entry.id, dev.name, "load")
            if item.state is State.QUEUED and item.device == dev.name:  # not moved to another node
                self.drop(item, err, "failed", stage="load")
            else:
                self.events.emit("failed", model=entry.id, device=dev.name, stage="load", error=err.message)
            if isinstance(e, asyncio.CancelledError):
                raise

    def _arm(self, dev: DeviceState, delay: float) -> None:
        if dev.grace_timer is not None:
            dev.grace_timer.cancel()
        dev.grace_timer = asyncio.get_running_loop().call_later(delay, self.kick, dev)

    def _settle(self, dev: DeviceState, item: WorkItem) -> None:
        """An explicit load whose model is resident: done without running anything."""
        dev.queue.remove(item)
        item.state = State.DONE
        item.outcome = "finished"
        self.items.pop(item.id, None)
        item.started.set_result(None)
        item.done.set_result(None)
        if item.trace is not None:
            item.trace.settled()

    def _start(self, dev: DeviceState, item: WorkItem, now: float) -> None:
        m = item.model
        dev.queue.remove(item)
        item.state = State.RUNNING
        item.started_at = now
        self.fair.started(item)
        dev.running[item.id] = item
        dev.busy[m] += 1
        r = dev.ledger.resident[m]
        r.last_used = now
        r.last_priority = int(item.priority)
        item.started.set_result(None)
        waited = now - item.enqueued
        self.metrics.wait.labels(dev.name, PRIORITY_NAMES[item.priority]).observe(waited)
        self.metrics.principal_wait.labels(item.principal).inc(waited)
        if item.trace is not None:
            item.trace.started(waited)
        self.events.emit("started", item, waited=round(waited, 4))
        self.tasks.spawn(self._run(dev, item))

    async def _run(self, dev: DeviceState, item: WorkItem) -> None:
        t0 = time.monotonic()
        result: Any = None
        error: BaseException | None = None
        try:
            if item.trace is None:
                result, error = await self.execution.execute(dev, item)
            else:
                worker = self.residents.worker(dev, item.model)
                executor = worker.executor if worker is not None else item.entry.executor
                with item.trace.running(executor, worker.pid if worker is not None else None):
                    result, error = await self.execution.execute(dev, item)
        except BaseException:  # the task was cancelled: only at shutdown
            item.ctx.cancel()
            error = Cancelled("cancelled: Loom is shutting down")
            raise
        finally:
            self._finish(dev, item, result, error, time.monotonic() - t0)

    def _finish(self, dev: DeviceState, item: WorkItem, result: Any, error: BaseException | None, seconds: float):
        m = item.model
        now = time.monotonic()
        dev.running.pop(item.id, None)
        dev.busy[m] -= 1
        if dev.busy[m] <= 0:
            del dev.busy[m]
        r = dev.ledger.resident.get(m)
        if r is not None:
            r.last_used = now
        if not dev.busy.get(m) and not dev.queue.count(m):
            self.policy.idle(m, now)
        item.state = State.DONE
        self.items.pop(item.id, None)
        if error is None:
            outcome = "finished"
            avg = self._run_seconds.get(m)
            self._run_seconds[m] = seconds if avg is None else 0.8 * avg + 0.2 * seconds
            if not item.stream:
                self.metrics.count_output(m, result, item.principal)
                if item.meter is not None:
                    item.meter(result)
        elif isinstance(error, Cancelled) or (item.ctx.cancelled and not _is_failure(error)):
            outcome = "cancelled"
            error = error if isinstance(error, Cancelled) else Cancelled("cancelled")
        else:
            outcome = "failed"
            if not isinstance(error, LoomError) and not is_oom(error):
                log_provider_bug(m, error)
            error = as_loom_error(error, m, dev.name, "run")
        item.outcome = outcome
        if item.trace is not None:
            item.trace.finished(result, error, outcome)
        self.metrics.run.labels(m).observe(seconds)
        self.metrics.items.labels(m, outcome).inc()
        fields: dict[str, Any] = {"seconds": round(seconds, 4), "ran": True}
        if error is not None:
            fields["error"] = getattr(error, "message", str(error))
        self.events.emit(outcome, item, **fields)
        if item.chunks is not None:  # a stream
            item.chunks.put_nowait((END, error))
        if error is None:
            succeed(item.done, result)
        else:
            fail(item.done, error)
        if item.entry.keep_alive == 0:
            self.tasks.spawn(self.residents.expire(dev, m))
        # A pass soon, not now: what the end of this item sets off (the done callbacks of its
        # future, an unload) runs first.
        self.kick(dev)


def log_provider_bug(model: str, error: BaseException) -> None:
    """A provider raised something that is not a ``loom.sdk.errors`` class: a bug in the plugin.
    The client gets a 502 ``provider_error``; the log gets the traceback, the worker's own when the
    call ran in another process."""
    remote = getattr(error, "remote_traceback", "")
    if remote:
        log.error("model %s: the provider raised %s (traceback from its worker):\n%s", model, error, remote.rstrip())
    else:
        log.error("model %s: the provider raised %s: %s", model, type(error).__name__, error, exc_info=error)


def _is_failure(error: BaseException) -> bool:
    """Errors that stay failures even when the call was also cancelled: its worker crashed or
    hung (the client should hear why, not "cancelled")."""
    return isinstance(error, (WorkerCrashed, ProviderTimeout))
