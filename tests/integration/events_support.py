"""The scheduler's events (``GET /admin/events``, SSE) read on a thread, for tests that check the
order work ran in from the scheduler's own account rather than from clocks."""

from __future__ import annotations

import json
import threading

import httpx


class SchedulerEvents:
    """Every event from subscription on, as ``(type, data)`` in the order the daemon sent them."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self.changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._subscribed.wait(10), "no comment line from /admin/events"

    def _read(self) -> None:
        try:
            self._follow()
        except httpx.HTTPError:  # close() ends the stream under the reader
            pass

    def _follow(self) -> None:
        with self._client.stream("GET", "/admin/events") as r:
            kind = None
            for line in r.iter_lines():
                if line.startswith(":"):
                    self._subscribed.set()
                elif line.startswith("event:"):
                    kind = line.partition(":")[2].strip()
                elif line.startswith("data:") and kind is not None:
                    event = json.loads(line.partition(":")[2])
                    with self.changed:
                        self.events.append((kind, event))
                        self.changed.notify_all()

    def of(self, *kinds: str) -> list[tuple[str, dict]]:
        with self.changed:
            return [(k, e) for k, e in self.events if k in kinds]

    def started(self) -> list[tuple[str, str]]:
        """The ``started`` events so far, as (model, priority)."""
        return [(e["model"], e["priority"]) for _, e in self.of("started")]

    def wait_for(self, count: int, *kinds: str) -> list[tuple[str, dict]]:
        """The events of ``kinds`` once there are ``count`` of them (fails after 60 s)."""
        with self.changed:
            assert self.changed.wait_for(lambda: sum(k in kinds for k, _ in self.events) >= count, timeout=60), (
                self.events
            )
        return self.of(*kinds)

    def close(self) -> None:
        self._client.close()
