"""The in-process executor: the model runs in the daemon's own process.

For the mock, remote providers (their ``async`` methods run on the event loop and only wait on
the network) and tests. Each worker has a thread pool as wide as the model's concurrency: sync
methods and generators run there, chunks hop to the loop with ``call_soon_threadsafe``. Memory
is measured as a change of the whole process (RSS or torch's allocator) around load and unload,
so it is only as exact as nothing else allocating meanwhile; a thread cannot be killed, so a hung
call is cancelled and abandoned rather than ended.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from loom.sdk.calls import CAPABILITY_METHODS, Call
from loom.sdk.errors import Cancelled
from loom.sdk.protocols import Provider, RunContext

from .base import LoadReport, Work, WorkerExit, WorkerMemory, chunks_of
from .memory import MemoryProbe, probe_for

if TYPE_CHECKING:
    from ..models import ModelEntry

log = logging.getLogger("loom.workers")


class InProcessExecutor:
    name: ClassVar[str] = "inprocess"
    cluster: ClassVar[bool] = False

    async def start(self, entry: ModelEntry, device: str, concurrency: int) -> InProcessWorker:
        worker = InProcessWorker(entry.id, entry.instance(), device, concurrency)
        await worker.load()
        return worker

    async def close(self) -> None:
        return None


class InProcessWorker:
    executor: ClassVar[str] = "inprocess"
    pid = None

    def __init__(self, model: str, provider: Provider, device: str, concurrency: int) -> None:
        self.model = model
        self.provider = provider
        self.device = device
        self.loaded = LoadReport(seconds=0.0, reported=None)
        self.exited: asyncio.Future[WorkerExit] = asyncio.get_running_loop().create_future()
        self._on_loop = on_loop(type(provider))
        self._probe: MemoryProbe = probe_for(device)
        name = "loom-" + model.replace("/", "-").replace(":", "")
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix=name)
        self._running: set[RunContext] = set()

    async def _thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def load(self) -> None:
        before, t0 = self._probe.read(), time.monotonic()
        try:
            await self._thread(self.provider.load, self.device)
        except BaseException:
            try:  # whatever the failed load took
                await self._thread(self.provider.unload)
            except Exception as e:
                log.warning("%s: unload after a failed load raised %s: %s", self.model, type(e).__name__, e)
            self._pool.shutdown(wait=False)
            _resolve(self.exited, WorkerExit(reason="stopped", detail="its load failed"))
            raise
        seconds = time.monotonic() - t0
        after = self._probe.read()
        measured = after - before if before is not None and after is not None else None
        try:
            reported = max(0, int(self.provider.memory_bytes()))
        except Exception:
            reported = None
        self.loaded = LoadReport(seconds=seconds, reported=reported, measured=measured)

    # --- calls ------------------------------------------------------------------------------------

    async def call(self, work: Work, ctx: RunContext) -> Any:
        fn = as_function(work)
        self._running.add(ctx)
        try:
            if self._inline(work) or inspect.iscoroutinefunction(fn):
                out = fn(self.provider, ctx)
                if inspect.isgenerator(out):
                    out = list(out)
            else:

                def run():
                    produced = fn(self.provider, ctx)
                    return list(produced) if inspect.isgenerator(produced) else produced

                out = await self._thread(run)
            if inspect.isasyncgen(out):
                out = [x async for x in out]
            elif inspect.isawaitable(out):
                out = await out
            return out
        finally:
            self._running.discard(ctx)

    def _inline(self, work: Work) -> bool:
        """Start ``work`` on the event loop: every method of the provider is ``async``, or the
        provider says this call does not block (:meth:`~loom.sdk.protocols.Provider.blocking`:
        the mock's text calls without simulated latency)."""
        return self._on_loop or (isinstance(work, Call) and not self.provider.blocking(work))

    async def feed(self, work: Work, ctx: RunContext, sink: Callable[[Any], None]) -> None:
        fn = as_function(work)
        self._running.add(ctx)
        try:
            if self._inline(work) or inspect.iscoroutinefunction(fn):
                rest = fn(self.provider, ctx)
                if inspect.isgenerator(rest):  # a quick plain generator: drained here, on the loop
                    _drain(rest, ctx, sink)
                    rest = None
            else:
                loop = asyncio.get_running_loop()
                # Chunks cross from the thread in batches: the thread appends to ``ready`` and
                # wakes the loop only when no hand-off is pending, so a provider that yields
                # faster than the loop takes them costs one wake-up per batch, not per chunk
                # (each wake-up is a write to the loop's self-pipe and a fight for the GIL).
                # deque appends and pops are atomic, and ``pending`` is cleared before the loop
                # empties ``ready``, so no chunk is left behind.
                ready: deque = deque()
                pending = False

                def hand_over() -> None:
                    nonlocal pending
                    pending = False
                    while ready:
                        sink(ready.popleft())

                def pump():
                    nonlocal pending
                    produced = fn(self.provider, ctx)
                    if inspect.isasyncgen(produced) or inspect.isawaitable(produced):
                        return produced  # iterated on the loop below
                    it = iter(produced)
                    try:
                        for chunk in it:
                            if ctx.cancelled:
                                raise Cancelled("cancelled")
                            ready.append(chunk)
                            if not pending:
                                pending = True
                                loop.call_soon_threadsafe(hand_over)
                    finally:
                        close = getattr(it, "close", None)
                        if close is not None:
                            close()
                    return None

                # Hand-offs scheduled by the thread run before this await returns (FIFO).
                rest = await self._thread(pump)
            if rest is not None:
                async for chunk in _iterate_async(rest, ctx):
                    sink(chunk)
        finally:
            self._running.discard(ctx)

    def stream(self, work: Work, ctx: RunContext) -> AsyncIterator[Any]:
        return chunks_of(self.feed, work, ctx)

    async def memory(self) -> WorkerMemory:
        """What the load added to the process (measured then), and what the provider reports."""
        try:
            reported = max(0, int(self.provider.memory_bytes()))
        except Exception:
            reported = 0
        measured = self.loaded.measured
        if self.device == "cpu":
            return WorkerMemory(host=measured, reported=reported)
        return WorkerMemory(devices={} if measured is None else {self.device: measured}, reported=reported)

    def kill(self, reason: str) -> bool:
        log.warning("%s: cancelling its running calls (%s); a thread cannot be killed", self.model, reason)
        for ctx in list(self._running):
            ctx.cancel()
        return False

    async def stop(self) -> WorkerExit:
        if self.exited.done():
            return self.exited.result()
        before = self._probe.read()
        detail = ""
        try:
            await self._thread(self.provider.unload)
            await self._thread(self._probe.collect)
        except Exception as e:
            detail = f"{type(e).__name__}: {e}"
            log.warning("%s: unload on %s raised %s", self.model, self.device, detail)
        after = self._probe.read()
        self._pool.shutdown(wait=False)
        freed = before - after if before is not None and after is not None else None
        result = WorkerExit(reason="stopped", freed=freed, detail=detail)
        _resolve(self.exited, result)
        return result


def _resolve(future: asyncio.Future, value: WorkerExit) -> None:
    """Settle ``exited``; a worker stopped from another event loop than the one that started it
    (a test fixture's teardown) finds that loop closed, and nothing is waiting there any more."""
    if not future.done() and not future.get_loop().is_closed():
        future.set_result(value)


def _drain(it: Any, ctx: RunContext, sink: Callable[[Any], None]) -> None:
    try:
        for chunk in it:
            if ctx.cancelled:
                raise Cancelled("cancelled")
            sink(chunk)
    finally:
        it.close()


async def _iterate_async(produced: Any, ctx: RunContext) -> AsyncIterator[Any]:
    if inspect.isawaitable(produced) and not inspect.isasyncgen(produced):
        produced = await produced
    if not inspect.isasyncgen(produced):
        for chunk in produced:  # an async method that returned a plain iterable
            yield chunk
        return
    try:
        async for chunk in produced:
            if ctx.cancelled:
                raise Cancelled("cancelled")
            yield chunk
    finally:
        await produced.aclose()


def as_function(work: Work) -> Any:
    """A call as ``fn(provider, ctx)``: a :class:`~loom.sdk.calls.Call` (what routes and jobs
    send) or, for the scheduler's own tests, a plain function."""
    return work.apply if isinstance(work, Call) else work


def on_loop(provider_cls: type[Provider]) -> bool:
    """True when every capability method of the provider is ``async``: calling one only makes a
    coroutine or async generator, so it can start on the event loop and skip the thread hop
    (remote providers). Sync methods always run on the worker's threads."""
    # Registration checked that each declared capability's methods exist (missing_methods).
    methods = [
        getattr(provider_cls, name)
        for capability in provider_cls.capabilities
        for name in CAPABILITY_METHODS[capability]
    ]
    return bool(methods) and all(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m) for m in methods)
