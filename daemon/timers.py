"""The daemon's one interval timer service: a single APScheduler ``AsyncIOScheduler``.

Services register what must run periodically with :meth:`Timers.every` when they are built
(provider health checks, job retention, the scheduler's keep-alive sweep); the app's lifespan
starts the timers after every service is open and stops them before any is closed. A coroutine
function runs on the event loop; a plain function runs in a worker thread, off the loop. A timer
never overlaps itself, and runs it missed while the loop was busy collapse into one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("loom.timers")


@dataclass(frozen=True)
class Timer:
    id: str
    seconds: float
    fn: Callable[[], Any]
    #: Seconds from start (or from registration, when already started) to the first run; None
    #: waits one interval.
    first: float | None


class Timers:
    def __init__(self) -> None:
        self._timers: dict[str, Timer] = {}
        self._aps: Any = None  # the AsyncIOScheduler while started

    def every(self, seconds: float, fn: Callable[[], Any], *, id: str, first: float | None = None) -> Timer:
        """Run ``fn()`` every ``seconds``; ``first`` is the delay of the first run (0: at once).

        May be called before :meth:`start` (the usual case) or while running.
        """
        if id in self._timers:
            raise ValueError(f"a timer with id {id!r} is already registered")
        timer = Timer(id=id, seconds=max(0.01, float(seconds)), fn=fn, first=first)
        self._timers[id] = timer
        if self._aps is not None:
            self._add(timer)
        return timer

    def cancel(self, id: str) -> None:
        """Stop a timer (a run in progress finishes)."""
        self._timers.pop(id, None)
        if self._aps is not None and self._aps.get_job(id) is not None:
            self._aps.remove_job(id)

    def __contains__(self, id: str) -> bool:
        return id in self._timers

    @property
    def running(self) -> bool:
        return self._aps is not None

    def job(self, id: str) -> Any:
        """The APScheduler job of a timer while running (its ``trigger``, ``next_run_time``), else None."""
        return self._aps.get_job(id) if self._aps is not None else None

    def start(self) -> None:
        """Start the scheduler on the running event loop, with every registered timer."""
        if self._aps is not None:
            return
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        # APScheduler logs every run (and "Adding job tentatively") at INFO: noise in the daemon's log.
        quiet = logging.getLogger("apscheduler")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        self._aps = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        for timer in self._timers.values():
            self._add(timer)
        self._aps.start()

    def stop(self) -> None:
        """Stop every timer; registrations are kept, so a later :meth:`start` runs them again."""
        aps, self._aps = self._aps, None
        if aps is not None and aps.running:
            aps.shutdown(wait=False)

    def _add(self, timer: Timer) -> None:
        first = timer.seconds if timer.first is None else timer.first
        self._aps.add_job(
            timer.fn,
            "interval",
            seconds=timer.seconds,
            id=timer.id,
            next_run_time=datetime.now(UTC) + timedelta(seconds=first),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
