"""Live delivery of job events to SSE streams and WebSocket connections, without gaps.

Events are persisted by the store first, then handed to subscribers here. A :class:`Subscriber`
watches one or more jobs through one bounded queue and hands its consumer each job's events in
order, each once: a newly watched job's past events are replayed from the store, and if the
subscriber falls behind (the queue was full, events were dropped) the gap is refilled from the
store, since every event has a per-job id. The SSE route and the WebSocket route both read a
subscriber; neither has gap-filling logic of its own.
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

    def put(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            pass  # next() notices the gap in event ids and reads the store

    def watch(self, job_id: str, after: int = 0, announce: dict[str, Any] | None = None) -> None:
        """Deliver ``job_id``'s events after the event id ``after``: those already stored first,
        then new ones as they come. ``announce`` (a message) is delivered before them."""
        self.jobs.add(job_id)
        self.last[job_id] = max(0, after)
        self.hub._by_job[job_id].add(self)  # before the store is read, so nothing falls between
        if announce is not None:
            self.say(announce)
        self.put(_Replay(job_id))

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
            if job_id not in self.jobs:
                continue  # unwatched since
            last = self.last[job_id]
            if isinstance(item, _Replay) or item.id != last + 1:  # a replay, or a gap to fill
                events = self.store.events_after(job_id, last)
            else:
                events = [item]
            events = [e for e in events if e.id > last]
            if events:
                self.last[job_id] = events[-1].id
                return events


class EventHub:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._by_job: dict[str, set[Subscriber]] = defaultdict(set)

    def subscriber(self) -> Subscriber:
        return Subscriber(self, self.store)

    def publish(self, event: Event) -> None:
        for sub in list(self._by_job.get(event.job_id, ())):
            sub.put(event)

    def close(self) -> None:
        """Wake every subscriber with ``None`` so streams end (daemon shutting down)."""
        for subs in list(self._by_job.values()):
            for sub in list(subs):
                sub.put(None)
