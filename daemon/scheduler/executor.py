"""Where provider code runs: on threads of this process, one pool per lane, behind a small
interface. The interface hands over a callable on a provider object that lives in this process, so
only in-process executors fit it; an executor in another process needs the call as data
(:mod:`loom.sdk.calls`) and the provider in the worker.

A *lane* is a serial line of work: one per device (``cpu``, ``cuda:0``) or, on a device whose
config allows models to run side by side, one per model on it (``cuda:0/llm``). The scheduler
decides what may run at once; the executor only carries it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Executor(Protocol):
    def configure(self, lane: str, workers: int) -> None:
        """Declare a lane and how many calls it may run at once (before its first call)."""

    async def call(self, lane: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on ``lane`` and return its result (or raise its error)."""

    def shutdown(self) -> None:
        """Stop accepting work; running calls finish on their own."""


class ThreadExecutor:
    """One thread pool per lane (a single thread unless the lane was configured wider)."""

    def __init__(self) -> None:
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._workers: dict[str, int] = {}

    def configure(self, lane: str, workers: int) -> None:
        self._workers[lane] = max(self._workers.get(lane, 1), workers)

    def _pool(self, lane: str) -> ThreadPoolExecutor:
        pool = self._pools.get(lane)
        if pool is None:
            name = "loom-" + lane.replace("/", "-").replace(":", "")
            pool = self._pools[lane] = ThreadPoolExecutor(self._workers.get(lane, 1), thread_name_prefix=name)
        return pool

    async def call(self, lane: str, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool(lane), fn, *args)

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools.clear()
