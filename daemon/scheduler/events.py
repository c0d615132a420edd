"""The scheduler's event bus: queued, started, finished, failed, cancelled, loaded, evicted,
unloaded, memory (and pinned). SSE, the WebSocket and the TUI are subscribers.

Each subscriber has its own bounded queue; a subscriber that falls behind loses its oldest events
(counted in ``dropped``) rather than slowing the scheduler down.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .queues import Priority

_CLOSED = object()


#: A priority's name as events show it ("interactive").
PRIORITY_NAMES = {p: p.name.lower() for p in Priority}


class Subscription:
    """An async iterator of event dicts; ``close()`` (or leaving ``async with``) unsubscribes."""

    def __init__(self, bus: EventBus, size: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue = asyncio.Queue(size)
        self.dropped = 0
        self.closed = False

    def _put(self, event: Any) -> None:
        if self.closed:
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    async def get(self, timeout: float | None = None) -> dict | None:
        """The next event; None on timeout. Raises StopAsyncIteration once closed."""
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if event is _CLOSED:
            self.closed = True
            raise StopAsyncIteration
        return event

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict:
        event = await self.get()
        assert event is not None
        return event

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._subscribers.discard(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


class EventBus:
    def __init__(self, history: int = 256, queue_size: int = 1024) -> None:
        self._subscribers: set[Subscription] = set()
        self._history: deque[dict] = deque(maxlen=history)
        self._queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        #: Called with each event as it is delivered, on the loop (the daemon's log is one).
        self.listeners: list[Callable[[dict], None]] = []

    def subscribe(self) -> Subscription:
        """Start receiving events now (before anything is awaited, so none are missed)."""
        self._bind()
        sub = Subscription(self, self._queue_size)
        self._subscribers.add(sub)
        return sub

    def __aiter__(self) -> Subscription:
        return self.subscribe()

    def recent(self, n: int | None = None) -> list[dict]:
        events = list(self._history)
        return events if n is None else events[-n:]

    def publish(self, type: str, **fields: Any) -> dict:
        return self._send({"type": type, "time": time.time(), **fields})

    def _send(self, event: dict) -> dict:
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._deliver, event)
        else:
            self._deliver(event)
        return event

    def emit(self, type: str, item: Any = None, **fields: Any) -> dict:
        """A scheduler event: ``model``, ``device`` and ``item`` always present (None when not
        about one), and the work item's id and priority when it is about one."""
        # Built in one go: a request emits three of these (queued, started, finished).
        if item is None:
            event = {"type": type, "time": time.time(), "model": None, "device": None, "item": None}
        else:
            event = {
                "type": type,
                "time": time.time(),
                "model": item.model,
                "device": item.device,
                "item": item.id,
                "priority": PRIORITY_NAMES[item.priority],
            }
        event.update(fields)
        return self._send(event)

    def _deliver(self, event: dict) -> None:
        self._history.append(event)
        for listener in self.listeners:
            listener(event)
        for sub in list(self._subscribers):
            sub._put(event)

    def close(self) -> None:
        """End every subscription (at shutdown)."""
        for sub in list(self._subscribers):
            sub._put(_CLOSED)
        self._subscribers.clear()

    def _bind(self, again: bool = False) -> None:
        """Remember the loop events are delivered on (publishing from another thread hops to it)."""
        if self._loop is None or again:
            try:
                self._loop = asyncio.get_running_loop()
                self._thread = threading.get_ident()
            except RuntimeError:
                pass
