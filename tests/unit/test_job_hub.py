"""The job event hub's one subscription: watching every job (the web UI's live pages) delivers
each job's events in order, once, from the first published after it started watching, even when
the subscriber's queue overflowed; ``gather`` turns a burst into one wake-up."""

from __future__ import annotations

import asyncio

import pytest
from loom.daemon.jobs import hub as hub_module
from loom.daemon.jobs.hub import EventHub
from loom.daemon.jobs.store import JobStore


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "loom.db")
    yield s
    s.close()


def make(store: JobStore, job_id: str) -> None:
    store.create_job(job_id, "p", "plugin", b"{}", f"output/p/{job_id}")


def emit(store: JobStore, hub: EventHub, job_id: str, n: int) -> None:
    for i in range(n):
        hub.publish(store.append_event(job_id, "progress", {"n": i}))


async def drain(sub) -> dict[str, list[int]]:
    """Every delivery queued now, as job id -> event ids in the order they came."""
    got: dict[str, list[int]] = {}
    while True:
        try:
            delivery = await sub.next(0.05)
        except TimeoutError:
            return got
        assert isinstance(delivery, list)
        for event in delivery:
            got.setdefault(event.job_id, []).append(event.id)


async def test_watching_every_job_starts_at_the_first_event_after_it_and_delivers_each_once(store):
    hub = EventHub(store)
    make(store, "old")
    emit(store, hub, "old", 2)  # before watching: not delivered
    sub = hub.subscriber()
    sub.watch_all()
    sub.watch("old", after=store.last_event_id("old"))  # watched both ways
    emit(store, hub, "old", 3)
    make(store, "new")  # a job submitted later
    emit(store, hub, "new", 2)
    assert await drain(sub) == {"old": [3, 4, 5], "new": [1, 2]}
    sub.close()
    emit(store, hub, "new", 1)
    assert sub.queue.empty() and not hub._all


async def test_events_dropped_while_the_queue_was_full_are_read_back_from_the_store(store, monkeypatch):
    monkeypatch.setattr(hub_module, "QUEUE_SIZE", 4)
    hub = EventHub(store)
    sub = hub.subscriber()
    sub.watch_all()
    make(store, "a")
    make(store, "b")
    emit(store, hub, "a", 3)
    emit(store, hub, "b", 5)  # one of b's fits, the rest are dropped
    emit(store, hub, "a", 2)
    assert sub.queue.full()
    got = await drain(sub)
    assert got == {"a": [1, 2, 3], "b": [1]}
    # The jobs' next events show the gaps, which are read back from the store: none missing.
    emit(store, hub, "b", 1)
    emit(store, hub, "a", 1)
    got = await drain(sub)
    assert got == {"a": [4, 5, 6], "b": [2, 3, 4, 5, 6]}
    # A job whose first events all found the queue full starts at its first event, not its first
    # delivered one.
    make(store, "c")
    emit(store, hub, "a", 4)
    emit(store, hub, "c", 2)  # both dropped
    await drain(sub)
    emit(store, hub, "c", 1)
    assert await drain(sub) == {"c": [1, 2, 3]}


async def test_gather_makes_a_burst_one_wake_up_and_ends_when_the_hub_closes(store):
    hub = EventHub(store)
    make(store, "j")
    sub = hub.subscriber()
    sub.watch_all()
    assert await sub.gather(0.05, 0.05) == []  # nothing happened

    async def burst() -> None:
        for _ in range(3):
            emit(store, hub, "j", 1)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(burst())
    events = await sub.gather(1.0, 0.2)
    await task
    assert [e.id for e in events] == [1, 2, 3]
    hub.close()
    assert await sub.gather(1.0, 0.2) is None
