"""Scheduler core: runs provider calls off the event loop, loading models on demand.

Every provider call goes through :meth:`Scheduler.run` or :meth:`Scheduler.stream`. Sync calls and
generators run on the device's worker thread (one thread per device); async ones on the loop.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from loom.sdk.errors import QueueFull, Unavailable
from loom.sdk.protocols import Provider, RunContext

from ..config import Config
from ..models import ModelEntry, ModelRegistry

T = TypeVar("T")
_DONE = object()


class Priority(enum.IntEnum):
    INTERACTIVE = 0  # the /v1 endpoints
    PIPELINE = 1  # steps of a pipeline job
    BATCH = 2


class Scheduler:
    def __init__(self, config: Config, registry: ModelRegistry) -> None:
        self.config = config
        self.registry = registry
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._loaded: dict[str, float] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for entry in self.registry:
            if entry.id in self._loaded:
                await self.unload(entry)
        for pool in self._executors.values():
            pool.shutdown(wait=False, cancel_futures=True)

    # --- devices ---------------------------------------------------------------------------

    def device_of(self, entry: ModelEntry) -> str:
        if not entry.local:
            return "remote"
        return "cpu" if entry.spec.device in ("auto", "cpu") else entry.spec.device

    def _executor(self, device: str) -> ThreadPoolExecutor:
        pool = self._executors.get(device)
        if pool is None:
            workers = 1 if device != "remote" else 16
            pool = self._executors[device] = ThreadPoolExecutor(workers, thread_name_prefix=f"loom-{device}")
        return pool

    async def _in_thread(self, entry: ModelEntry, fn: Callable[..., T], *args) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(self.device_of(entry)), fn, *args)

    # --- residency -------------------------------------------------------------------------

    async def load(self, entry: ModelEntry) -> Provider:
        lock = self._load_locks.setdefault(entry.id, asyncio.Lock())
        async with lock:
            provider = entry.instance()
            if entry.id not in self._loaded:
                await self._in_thread(entry, provider.load, self.device_of(entry))
                self._loaded[entry.id] = time.monotonic()
            return provider

    async def unload(self, entry: ModelEntry) -> None:
        lock = self._load_locks.setdefault(entry.id, asyncio.Lock())
        async with lock:
            if entry.id in self._loaded and entry.provider is not None:
                await self._in_thread(entry, entry.provider.unload)
                del self._loaded[entry.id]

    def is_loaded(self, entry: ModelEntry) -> bool:
        return entry.id in self._loaded

    # --- admission -------------------------------------------------------------------------

    def _slot(self, entry: ModelEntry) -> asyncio.Semaphore:
        sem = self._slots.get(entry.id)
        if sem is None:
            n = entry.config.concurrency or (1 if entry.local else 16)
            sem = self._slots[entry.id] = asyncio.Semaphore(n)
        return sem

    async def _acquire(self, entry: ModelEntry) -> asyncio.Semaphore:
        limits = self.config.daemon.limits
        max_queue = entry.config.max_queue or limits.max_queue
        sem = self._slot(entry)
        if sem.locked() and self._waiting.get(entry.id, 0) >= max_queue:
            raise QueueFull(f"The queue for model '{entry.id}' is full ({max_queue} waiting)", retry_after=1.0)
        self._waiting[entry.id] = self._waiting.get(entry.id, 0) + 1
        try:
            await asyncio.wait_for(sem.acquire(), limits.queue_timeout)
        except TimeoutError:
            raise Unavailable(
                f"Waited {limits.queue_timeout:g}s in the queue for model '{entry.id}'"
            ) from None
        finally:
            self._waiting[entry.id] -= 1
        return sem

    # --- running ---------------------------------------------------------------------------

    async def run(
        self,
        entry: ModelEntry,
        call: Callable[[Provider, RunContext], Any],
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> Any:
        """Run ``call(provider, ctx)`` once a slot is free and the model is resident."""
        ctx = ctx or RunContext(device=self.device_of(entry))
        sem = await self._acquire(entry)
        try:
            provider = await self.load(entry)
            if inspect.iscoroutinefunction(call):
                return await call(provider, ctx)
            try:
                result = await self._in_thread(entry, call, provider, ctx)
            except asyncio.CancelledError:
                ctx.cancel()
                raise
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            sem.release()

    async def stream(
        self,
        entry: ModelEntry,
        call: Callable[[Provider, RunContext], Any],
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> AsyncIterator[Any]:
        """Iterate ``call(provider, ctx)`` (a generator or async generator) chunk by chunk.

        Closing the iterator early (a client that disconnects) cancels the generation.
        """
        ctx = ctx or RunContext(device=self.device_of(entry))
        sem = await self._acquire(entry)
        try:
            provider = await self.load(entry)
            produced = call(provider, ctx)
            if inspect.isasyncgen(produced):
                try:
                    async for item in produced:
                        yield item
                finally:
                    ctx.cancel()
                    await produced.aclose()
                return
            async for item in self._drain_in_thread(entry, produced, ctx):
                yield item
        finally:
            sem.release()

    async def _drain_in_thread(self, entry: ModelEntry, gen, ctx: RunContext) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        finished = threading.Event()

        def pump() -> None:
            try:
                for item in gen:
                    if ctx.cancelled:
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, (item, None))
            except BaseException as e:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, (_DONE, e))
                return
            finally:
                gen.close()
                finished.set()
            loop.call_soon_threadsafe(queue.put_nowait, (_DONE, None))

        future = loop.run_in_executor(self._executor(self.device_of(entry)), pump)
        try:
            while True:
                item, error = await queue.get()
                if item is _DONE:
                    if error is not None:
                        raise error
                    break
                yield item
        finally:
            ctx.cancel()
            await asyncio.shield(future)
