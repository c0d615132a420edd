"""The scheduler's background tasks (loads, runs, keep-alive unloads): kept referenced until they
end, their failures logged, and waited for at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("loom.scheduler")


class TaskSet:
    def __init__(self) -> None:
        self.pending: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.pending.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("scheduler task failed: %s: %s", type(e).__name__, e, exc_info=e)

    async def wait(self, timeout: float) -> None:
        pending = [t for t in self.pending if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def __len__(self) -> int:
        return len(self.pending)
