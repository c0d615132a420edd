"""Live delivery of job events to SSE streams and WebSocket connections.

Events are persisted by the store first, then handed to subscribers here. A subscriber watches
one or more jobs through one bounded queue; if it falls behind, events are dropped for it and
it refills the gap from the store (every event has a per-job id), so nothing is lost.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from .store import Event

QUEUE_SIZE = 1024


class Subscriber:
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.jobs: set[str] = set()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        #: Job id -> id of the last event handed to the client; set by the consumer.
        self.last: dict[str, int] = {}

    def put(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            pass  # the consumer notices the gap in event ids and reads the store

    def watch(self, job_id: str) -> None:
        self.jobs.add(job_id)
        self.hub._by_job[job_id].add(self)

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


class EventHub:
    def __init__(self) -> None:
        self._by_job: dict[str, set[Subscriber]] = defaultdict(set)

    def subscriber(self) -> Subscriber:
        return Subscriber(self)

    def publish(self, event: Event) -> None:
        for sub in list(self._by_job.get(event.job_id, ())):
            sub.put(event)

    def close(self) -> None:
        """Wake every subscriber with ``None`` so streams end (daemon shutting down)."""
        for subs in list(self._by_job.values()):
            for sub in list(subs):
                sub.put(None)
