"""Job admission: which accepted jobs run now, and back-pressure for the model calls of those that do.

An accepted job never fails for load. Three bounds keep it so, each at the place where the load
can still wait instead of failing:

- :class:`Admission`, between acceptance and running: at most ``max_running`` jobs run at once
  (and at most a per-pipeline share of them); the rest stay ``queued`` in order of priority
  (higher first), then age (older first), and know their position. Before a job is accepted,
  :meth:`Admission.check_room` refuses it (429 with ``Retry-After``) when the queued jobs of its
  owner, or of everyone, are at their bound: the only load error a submitter sees, and it comes
  before anything is stored.
- :class:`ModelRoom`, around each model call of a running job: the job's calls to one model that
  are queued or running in the scheduler are held to the model's slots plus half its queue limit
  (``max_queue``), so pipeline work never fills a model's queue and interactive clients keep
  the other half. A call that still meets a full queue (interactive requests took the room), or
  that waited in it past ``queue_timeout``, waits for room and is tried again: woken when a
  job's call to that model ends, or after the scheduler's ``Retry-After`` at the latest.

Why here and not in the scheduler: ``max_queue`` exists to push back on HTTP clients, who can
retry, and the scheduler's admission is shared by every kind of work. A durable job is a client
that must not be told "later": so the job layer, which knows its calls can wait, waits, and the
scheduler keeps one rule for everyone. The job budget keeps the job layer from starting thousands
of jobs whose calls would only wait in those queues; the per-model room keeps the jobs it did
start from crowding interactive requests out of them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from loom.sdk.errors import QueueFull

#: How often, at most, queued jobs are told their new position (an event when it has halved).
REPORT_INTERVAL_S = 1.0
#: The longest a call that met a full model queue waits before it is tried again.
ROOM_WAIT_MAX_S = 5.0
#: What the running jobs' average run time starts at (for ``Retry-After``) before one has finished.
FIRST_RUN_S = 1.0


@dataclass
class Waiting:
    """A queued job: its place (``key``: higher priority first, then older) and its admission."""

    job_id: str
    pipeline: str
    owner: str
    priority: int
    created_at: float
    seq: int
    admitted: asyncio.Future[None]
    #: The position last reported in an event (positions are reported as they halve).
    reported: int = 0

    @property
    def key(self) -> tuple[int, float, int]:
        return (-self.priority, self.created_at, self.seq)


@dataclass
class Budget:
    """How many jobs may run at once, overall and per pipeline, and how many may wait."""

    max_running: int
    per_pipeline: dict[str, int] = field(default_factory=dict)
    #: A pipeline with no entry of its own in ``per_pipeline``.
    pipeline_default: int = 0
    max_queued: int = 10_000
    max_queued_per_owner: int = 5_000

    def for_pipeline(self, name: str) -> int:
        return self.per_pipeline.get(name) or self.pipeline_default or self.max_running


class Admission:
    """The queue of accepted jobs that wait to run, and the budget of those running."""

    def __init__(self, budget: Budget, report: Callable[[str, int], None] | None = None) -> None:
        self.budget = budget
        #: Called with (job id, position) when a queued job's position has halved since last told.
        self._report = report
        self.waiting: dict[str, Waiting] = {}
        self.running: dict[str, tuple[str, float]] = {}  # job id -> (pipeline, admitted at)
        self._running_by_pipeline: Counter[str] = Counter()
        self._heaps: dict[str, list[tuple[tuple[int, float, int], Waiting]]] = {}
        self._by_owner: Counter[str] = Counter()
        self._by_priority: Counter[int] = Counter()
        self._youngest: dict[int, float] = {}  # priority -> the newest created_at queued at it
        self._seq = itertools.count()
        self._positions: dict[str, int] = {}
        self._positions_valid = True
        self._report_handle: asyncio.TimerHandle | None = None
        self._last_report = 0.0
        self._run_seconds = FIRST_RUN_S  # moving average of how long an admitted job runs
        self._closed = False  # the daemon stops: nothing more starts

    # --- accepting ------------------------------------------------------------------------

    def check_room(self, owner: str) -> None:
        """Raise QueueFull (429 with Retry-After) when one more queued job would pass a bound."""
        b = self.budget
        if len(self.waiting) >= b.max_queued:
            raise QueueFull(
                f"Too many jobs are queued ({len(self.waiting)}; [jobs] max_queued = {b.max_queued}); retry later",
                retry_after=self.retry_after(),
                code="job_queue_full",
            )
        if self._by_owner[owner] >= b.max_queued_per_owner:
            raise QueueFull(
                f"You have {self._by_owner[owner]} jobs queued ([jobs] max_queued_per_owner = "
                f"{b.max_queued_per_owner}); retry when some have started",
                retry_after=self.retry_after(),
                code="job_queue_full",
            )

    def retry_after(self) -> float:
        """Seconds until a queued job is likely to have started (one run's share of the budget)."""
        return max(1.0, min(60.0, math.ceil(self._run_seconds / max(1, self.budget.max_running))))

    def enqueue(self, job_id: str, pipeline: str, owner: str, priority: int, created_at: float) -> Waiting:
        """Queue ``job_id``; its ``admitted`` future resolves when it may run (perhaps at once)."""
        w = Waiting(
            job_id=job_id,
            pipeline=pipeline,
            owner=owner,
            priority=priority,
            created_at=created_at,
            seq=next(self._seq),
            admitted=asyncio.get_running_loop().create_future(),
        )
        if created_at >= self._youngest.get(priority, -math.inf):
            # The usual case, a new job: it is the last of its priority, so its place is a sum.
            w.reported = sum(n for p, n in self._by_priority.items() if p >= priority) + 1
            self._add(w)
        else:
            self._add(w)
            w.reported = self.position(job_id) or 1
        self.admit()
        return w

    def _add(self, w: Waiting) -> None:
        self.waiting[w.job_id] = w
        heapq.heappush(self._heaps.setdefault(w.pipeline, []), (w.key, w))
        self._by_owner[w.owner] += 1
        self._by_priority[w.priority] += 1
        self._youngest[w.priority] = max(self._youngest.get(w.priority, -math.inf), w.created_at)
        self._positions_valid = False

    def remove(self, job_id: str) -> bool:
        """Take a queued job out (it was cancelled, or the daemon stops). False if not queued."""
        w = self.waiting.pop(job_id, None)
        if w is None:
            return False
        self._forget(w)
        if not w.admitted.done():
            w.admitted.cancel()
        self.admit()  # a pipeline's queue head may have changed
        if self.waiting:
            self._schedule_report()  # those behind it moved up
        return True

    def _forget(self, w: Waiting) -> None:
        self._by_owner[w.owner] -= 1
        if self._by_owner[w.owner] <= 0:
            del self._by_owner[w.owner]
        self._by_priority[w.priority] -= 1
        if self._by_priority[w.priority] <= 0:
            del self._by_priority[w.priority]
        self._positions_valid = False
        # Its heap entry stays and is skipped when it comes up (``waiting`` no longer has it).

    # --- running --------------------------------------------------------------------------

    def release(self, job_id: str) -> None:
        """A running job ended: its place in the budget goes to the next queued job."""
        entry = self.running.pop(job_id, None)
        if entry is None:
            return
        pipeline, since = entry
        self._running_by_pipeline[pipeline] -= 1
        self._run_seconds = 0.9 * self._run_seconds + 0.1 * (time.monotonic() - since)
        self.admit()

    def admit(self) -> None:
        """Start queued jobs, best first, while the budget has room."""
        admitted = False
        while not self._closed and len(self.running) < self.budget.max_running:
            best: tuple[tuple[int, float, int], Waiting] | None = None
            for pipeline, heap in self._heaps.items():
                if self._running_by_pipeline[pipeline] >= self.budget.for_pipeline(pipeline):
                    continue
                while heap and self.waiting.get(heap[0][1].job_id) is not heap[0][1]:
                    heapq.heappop(heap)  # cancelled (or resumed anew) since it was queued
                if heap and (best is None or heap[0][0] < best[0]):
                    best = heap[0]
            if best is None:
                break
            w = best[1]
            heapq.heappop(self._heaps[w.pipeline])
            del self.waiting[w.job_id]
            self._forget(w)
            self.running[w.job_id] = (w.pipeline, time.monotonic())
            self._running_by_pipeline[w.pipeline] += 1
            if not w.admitted.done():
                w.admitted.set_result(None)
            admitted = True
        if admitted and self.waiting:
            self._schedule_report()

    # --- positions ------------------------------------------------------------------------

    def position(self, job_id: str) -> int | None:
        """1 for the next job to start, ... ; None when ``job_id`` is not queued."""
        if job_id not in self.waiting:
            return None
        if not self._positions_valid:
            order = sorted(self.waiting.values(), key=lambda w: w.key)
            self._positions = {w.job_id: i for i, w in enumerate(order, 1)}
            self._positions_valid = True
        return self._positions.get(job_id)

    def _schedule_report(self) -> None:
        if self._report is None or self._report_handle is not None:
            return
        delay = max(0.0, self._last_report + REPORT_INTERVAL_S - time.monotonic())
        self._report_handle = asyncio.get_running_loop().call_later(delay, self._report_positions)

    def _report_positions(self) -> None:
        """Tell each queued job whose position has halved since it was last told (a job hears
        of it a few times on its way to the front, not at every admission)."""
        self._report_handle = None
        self._last_report = time.monotonic()
        if self._report is None:
            return
        for w in list(self.waiting.values()):
            pos = self.position(w.job_id)
            if pos is not None and pos * 2 <= w.reported:
                w.reported = pos
                self._report(w.job_id, pos)

    def close(self) -> None:
        """The daemon stops: no queued job starts any more (they are left for the next start)."""
        self._closed = True
        if self._report_handle is not None:
            self._report_handle.cancel()
            self._report_handle = None

    def stats(self) -> dict[str, int]:
        return {"running": len(self.running), "queued": len(self.waiting), "max_running": self.budget.max_running}


class ModelRoom:
    """Back-pressure for running jobs' model calls, per model (see the module's docstring).

    ``limit(model)`` is how many of the jobs' calls to ``model`` may be in the scheduler at once
    (queued or running); a call beyond it waits here, in arrival order, for one to end."""

    def __init__(self, limit: Callable[[str], int]) -> None:
        self._limit = limit
        self._limits: dict[str, int] = {}
        self._in_flight: Counter[str] = Counter()
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._full: dict[str, deque[asyncio.Future[None]]] = {}

    def limit(self, model: str) -> int:
        if model not in self._limits:
            self._limits[model] = max(1, self._limit(model))
        return self._limits[model]

    def in_flight(self, model: str) -> int:
        return self._in_flight[model]

    def try_acquire(self, model: str) -> bool:
        """Take a place for a call to ``model`` if one is free and nobody waits for one."""
        if self._in_flight[model] < self.limit(model) and not self._waiters.get(model):
            self._in_flight[model] += 1
            return True
        return False

    async def acquire(self, model: str) -> None:
        """Wait for a place for a call to ``model`` (in arrival order); :meth:`release` frees it."""
        if self.try_acquire(model):
            return
        waiters = self._waiters.setdefault(model, deque())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(model)  # granted as it was cancelled: hand the place on
            elif fut in waiters:
                waiters.remove(fut)
            raise

    def release(self, model: str) -> None:
        self._in_flight[model] -= 1
        waiters = self._waiters.get(model)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                self._in_flight[model] += 1
                fut.set_result(None)
                break
        full = self._full.get(model)
        while full:  # a call that met a full queue: one more place is free now
            fut = full.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    async def wait_for_room(self, model: str, timeout: float) -> None:
        """After a full queue: until a job's call to ``model`` ends, or ``timeout`` seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        full = self._full.setdefault(model, deque())
        full.append(fut)
        try:
            await asyncio.wait_for(fut, max(0.01, min(timeout, ROOM_WAIT_MAX_S)))
        except TimeoutError:
            pass
        finally:
            if not fut.done():
                fut.cancel()
            try:
                full.remove(fut)
            except ValueError:
                pass
