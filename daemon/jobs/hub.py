"""Live delivery of job events to SSE streams and WebSocket connections, without gaps.

Events are persisted by the store first, then handed to subscribers here. A :class:`Subscriber`
watches one or more jobs through one bounded queue and hands its consumer each job's events in
order, each once: a newly watched job's past events are replayed from the store, and if the
subscriber falls behind (the queue was full, events were dropped) the gap is refilled from the
store, since every event has a per-job id. The SSE route and the WebSocket route both read a
subscriber; neither has gap-filling logic of its own.

A subscriber may also watch every job (:meth:`Subscriber.watch_all`: the web UI's job list and
evaluation page), getting each job's events from the first one published after it started
watching. The web UI's live pages re-read the store when woken, so they take deliveries in
gathered bursts (:meth:`Subscriber.gather`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .store import Event, JobStore

QUEUE_SIZE = 1024


@dataclass(frozen=True)
class _Replay:
    """Queued when a job is watched: the consumer reads the job's past events from the store here."""

    job_id: str


@dataclass(frozen=True)
class _Say:
    """A message of the consumer's own, delivered in order with the events (WebSocket replies)."""

    message: dict[str, Any]


class Subscriber:
    def __init__(self, hub: EventHub, store: JobStore) -> None:
        self.hub, self.store = hub, store
        self.jobs: set[str] = set()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        #: Job id -> id of the last event handed to the consumer.
        self.last: dict[str, int] = {}
        #: Watching every job (:meth:`watch_all`).
        self.everything = False
        #: For a job seen through ``watch_all`` and not yet delivered: the id of its first event
        #: offered to the queue (queued or dropped: the queue may have been full), where the job's
        #: deliveries begin.
        self._first: dict[str, int] = {}

    def put(self, item: Any) -> None:
        if isinstance(item, Event) and item.job_id not in self.last:
            # A job met through watch_all has no last id yet to notice a gap from: remember where
            # its events began, in case the first ones are dropped.
            self._first.setdefault(item.job_id, item.id)
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            pass  # next() notices the gap in event ids and reads the store

    def watch(self, job_id: str, after: int = 0, announce: dict[str, Any] | None = None) -> None:
        """Deliver ``job_id``'s events after the event id ``after``: those already stored first,
        then new ones as they come. ``announce`` (a message) is delivered before them."""
        self.jobs.add(job_id)
        self.last[job_id] = max(0, after)
        self._first.pop(job_id, None)
        self.hub._by_job[job_id].add(self)  # before the store is read, so nothing falls between
        if announce is not None:
            self.say(announce)
        self.put(_Replay(job_id))

    def watch_all(self) -> None:
        """Deliver every job's events, those of jobs submitted later too, from the first event
        published after this call (a job watched with :meth:`watch` as well gets each event once)."""
        self.everything = True
        self.hub._all.add(self)

    def say(self, message: dict[str, Any]) -> None:
        """Queue a message of the consumer's own, in order with the events."""
        self.put(_Say(message))

    def unwatch(self, job_id: str) -> None:
        self.jobs.discard(job_id)
        self.last.pop(job_id, None)
        subs = self.hub._by_job.get(job_id)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self.hub._by_job[job_id]

    def close(self) -> None:
        for job_id in list(self.jobs):
            self.unwatch(job_id)
        self.everything = False
        self.hub._all.discard(self)

    async def next(self, timeout: float | None = None) -> list[Event] | dict[str, Any] | None:
        """The next delivery: one job's new events (in order, none missing, none repeated), a
        message queued with :meth:`say`, or None once the hub closed (the daemon is stopping).
        Raises TimeoutError when nothing came for ``timeout`` seconds."""
        while True:
            item = await asyncio.wait_for(self.queue.get(), timeout)
            if item is None:
                return None
            if isinstance(item, _Say):
                return item.message
            job_id = item.job_id
            if job_id not in self.jobs and not self.everything:
                continue  # unwatched since
            if job_id not in self.last:  # a job met through watch_all: from its first event on
                self.last[job_id] = self._first.pop(job_id, item.id) - 1
            last = self.last[job_id]
            if isinstance(item, _Replay) or item.id != last + 1:  # a replay, or a gap to fill
                events = self.store.events_after(job_id, last)
            else:
                events = [item]
            events = [e for e in events if e.id > last]
            if events:
                self.last[job_id] = events[-1].id
                return events

    async def gather(self, timeout: float, settle: float) -> list[Event] | None:
        """Wait up to ``timeout`` seconds for a delivery, then take what else comes within
        ``settle`` seconds: the events, any jobs' ([] when nothing came; messages are skipped),
        or None once the hub closed. A burst of events becomes one wake-up."""
        loop = asyncio.get_running_loop()
        got: list[Event] = []
        deadline: float | None = None
        while True:
            wait = timeout if deadline is None else deadline - loop.time()
            if wait <= 0:
                return got
            try:
                delivery = await self.next(wait)
            except TimeoutError:
                return got
            if delivery is None:
                return None
            if isinstance(delivery, list):
                got.extend(delivery)
            if deadline is None:
                deadline = loop.time() + settle


class EventHub:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._by_job: dict[str, set[Subscriber]] = defaultdict(set)
        #: Subscribers watching every job.
        self._all: set[Subscriber] = set()

    def subscriber(self) -> Subscriber:
        return Subscriber(self, self.store)

    def publish(self, event: Event) -> None:
        for sub in list(self._by_job.get(event.job_id, ())):
            sub.put(event)
        for sub in list(self._all):
            if event.job_id not in sub.jobs:  # watched both ways: delivered above
                sub.put(event)

    def close(self) -> None:
        """Wake every subscriber with ``None`` so streams end (daemon shutting down)."""
        for sub in {s for subs in self._by_job.values() for s in subs} | self._all:
            sub.put(None)
