"""Running one started work item on its model's worker: the call or the stream, the retry after
an out-of-memory error, and the watchdog that ends a call that hangs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from loom.sdk.errors import Cancelled, ProviderTimeout, WorkerCrashed

from ..workers import Worker
from ..workers.channel import Channel
from .metrics import SchedulerMetrics
from .oom import is_oom
from .queues import WorkItem
from .residency import Residents
from .state import DeviceState

log = logging.getLogger("loom.scheduler")

CHUNK, END = "chunk", "end"


class Execution:
    def __init__(self, residents: Residents, metrics: SchedulerMetrics) -> None:
        self.residents = residents
        self.metrics = metrics

    async def execute(self, dev: DeviceState, item: WorkItem) -> tuple[Any, Exception | None]:
        """Run ``item``; returns (result, None) or (None, the error). Raises only when the task
        itself is cancelled (shutdown)."""
        for attempt in (1, 2):
            try:
                return await self._attempt(dev, item), None
            except Exception as e:
                if attempt == 1 and is_oom(e) and not item.ctx.cancelled and not item.yielded:
                    self.metrics.oom.labels(dev.name, item.model, "run").inc()
                    log.warning("%s: out of memory while running (%s); evicting others, retrying", item.model, e)
                    try:
                        if await self.residents.evict_for_oom(dev, keep=item.model):
                            continue
                    except Exception as evicting:
                        return None, evicting
                return None, e
        raise AssertionError("unreachable")

    async def _attempt(self, dev: DeviceState, item: WorkItem) -> Any:
        worker = self.residents.worker(dev, item.model)
        if worker is None:  # its worker died between the start decision and now
            raise WorkerCrashed(f"model '{item.model}' is no longer loaded: its worker ended")
        if worker.exited.done():  # it died a moment ago; its exit is being recorded
            raise WorkerCrashed(f"model '{item.model}': {worker.exited.result().detail or 'its worker ended'}")

        def lost(reason: str) -> None:
            self.residents.lost(dev, item.model, worker, reason)

        with Watchdog(item.entry.call_timeout, worker, item, lost) as watchdog:
            if item.collect:
                return await self._collect(worker, item, watchdog)
            if item.chunks is not None:  # a stream
                await self._pump(worker, item, item.chunks, watchdog)
                return None
            return await worker.call(item.call, item.ctx)

    async def _collect(self, worker: Worker, item: WorkItem, watchdog: Watchdog) -> list:
        """A stream's chunks kept where they are made and returned together, each counted and
        feeding the watchdog as it comes (an item that collects: :meth:`Scheduler.collect`)."""
        count, clock = self.metrics.stream_counter(item.model, item.principal), time.monotonic
        kept: list = []

        meter = item.meter or _ignore

        def keep(chunk: Any) -> None:
            item.yielded = True
            watchdog.last = clock()
            count(chunk)
            meter(chunk)
            kept.append(chunk)

        await worker.feed(item.call, item.ctx, keep if item.trace is None else item.trace.watch(keep))
        return kept

    async def _pump(self, worker: Worker, item: WorkItem, chunks: Channel, watchdog: Watchdog) -> None:
        """Pass a stream's chunks from the worker into ``chunks`` (``item.chunks``) as they come."""
        count, clock = self.metrics.stream_counter(item.model, item.principal), time.monotonic

        meter = item.meter or _ignore

        def sink(chunk: Any) -> None:
            item.yielded = True
            watchdog.last = clock()
            count(chunk)
            meter(chunk)
            chunks.put_nowait((CHUNK, chunk))

        await worker.feed(item.call, item.ctx, sink if item.trace is None else item.trace.watch(sink))


def _ignore(chunk: Any) -> None:
    pass


class Watchdog:
    """Ends a call that produces nothing (no result, chunk or progress report) for ``timeout``
    seconds: its worker is killed (a process) or its context cancelled (in process), and the
    call fails with :class:`ProviderTimeout` (504). One timer per call, re-armed only when it
    fires early, so a token costs a clock read and nothing more."""

    def __init__(
        self, timeout: float | None, worker: Worker, item: WorkItem, lost: Callable[[str], None] = lambda r: None
    ) -> None:
        self.timeout = timeout
        self.worker = worker
        self.item = item
        self.lost = lost
        self.last = time.monotonic()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._remove: Callable[[], None] | None = None

    def __enter__(self) -> Watchdog:
        if self.timeout:
            self._task = asyncio.current_task()
            self._handle = asyncio.get_running_loop().call_later(self.timeout, self._check, self.timeout)
            self._remove = self.item.ctx.add_progress_callback(self._progress)
        return self

    def _progress(self, done: int, total: int, message: str) -> None:
        self.last = time.monotonic()  # may run on a worker thread: a float store is atomic

    def _check(self, timeout: float) -> None:
        idle = time.monotonic() - self.last
        if idle < timeout:
            self._handle = asyncio.get_running_loop().call_later(timeout - idle, self._check, timeout)
            return
        self.fired = True
        reason = f"a call to model '{self.item.model}' produced nothing for {self.timeout:g}s"
        log.warning("%s (%s); ending it", reason, self.item.id)
        if self.worker.kill(reason):
            self.lost(reason)
        if self._task is not None:
            self._task.cancel()

    def __exit__(self, kind, error, tb) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._remove is not None:
            self._remove()
        if self.fired and kind is not None and issubclass(kind, (asyncio.CancelledError, WorkerCrashed, Cancelled)):
            if self._task is not None and issubclass(kind, asyncio.CancelledError):
                self._task.uncancel()
            how = "its worker process was killed" if self.worker.pid is not None else "it was cancelled"
            raise ProviderTimeout(
                f"model '{self.item.model}' produced nothing for {self.timeout:g}s (call_timeout); {how}"
            ) from None
