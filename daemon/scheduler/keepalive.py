"""The keep-alive timer: every ``interval`` seconds, unload the models idle past their keep-alive.

An APScheduler interval job on the running loop. It is the scheduler's only timer and knows
nothing of it but the coroutine function it calls, so a shared timer service can take it over.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any


class KeepAliveTimer:
    def __init__(self, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        self.interval = max(0.01, interval)
        self.job = job
        self._aps: Any = None

    def start(self) -> None:
        if self._aps is not None:
            return
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        quiet = logging.getLogger("apscheduler.executors")  # it logs every run at INFO
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        self._aps = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=datetime.UTC)
        self._aps.add_job(
            self.job,
            "interval",
            seconds=self.interval,
            id="loom-keep-alive",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._aps.start()

    def stop(self) -> None:
        if self._aps is not None:
            try:
                self._aps.shutdown(wait=False)
            except Exception:  # not running
                pass
            self._aps = None
