"""Queue positions and wait estimates: on each queued item (the scheduler's snapshot, which
``GET /admin/scheduler`` and the TUI show), and in the ``x-loom-queue-position`` header of an
answer whose work had to queue; and the per-principal counters of /metrics."""

from __future__ import annotations

import asyncio
import threading

import httpx
from loom.daemon.api.respond import QUEUE_POSITION
from loom.daemon.scheduler import Priority, current_principal, current_queue_position
from loom.daemon.scheduler.metrics import OTHER, BoundedLabels

from tests.unit.mock_apps import concurrent_client, keyed_app, mock_app
from tests.unit.test_scheduler import entry, gated, make, ok, running, until


async def test_each_waiting_item_has_its_place_and_the_header_value():
    a = entry("a")
    s = make([a])
    gate = threading.Event()
    positions: dict[str, int] = {}

    async def run(name, call, priority=Priority.INTERACTIVE):
        await s.run(a, call, priority=priority)
        positions[name] = current_queue_position.get()  # what served_by puts in the header

    async with running(s):
        first = asyncio.create_task(run("first", gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        second = asyncio.create_task(run("second", ok()))
        await until(lambda: len(s.devices["cpu"].queue) == 1)
        third = asyncio.create_task(run("third", ok(), Priority.PIPELINE))
        await until(lambda: len(s.devices["cpu"].queue) == 2)
        cpu = next(d for d in s.snapshot()["devices"] if d["name"] == "cpu")
        assert [(q["position"], q["priority"]) for q in cpu["queued"]] == [(1, "interactive"), (2, "pipeline")]
        # No call of "a" has ended yet: nothing to estimate from.
        assert [q["estimated_wait"] for q in cpu["queued"]] == [None, None]
        gate.set()
        await asyncio.gather(first, second, third)
    assert positions == {"first": 0, "second": 1, "third": 2}


async def test_the_estimate_adds_up_the_work_ahead():
    a = entry("a")
    s = make([a])
    gate = threading.Event()
    async with running(s):
        await s.run(a, ok(seconds=0.05))  # one call has run: its time is what the estimate uses
        per_call = s.dispatcher.run_seconds("a")
        assert per_call is not None and per_call >= 0.05
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        waiting = [asyncio.create_task(s.run(a, ok())) for _ in range(3)]
        await until(lambda: len(s.devices["cpu"].queue) == 3)
        cpu = next(d for d in s.snapshot()["devices"] if d["name"] == "cpu")
        estimates = [q["estimated_wait"] for q in cpu["queued"]]
        assert estimates == [0.0, round(per_call, 3), round(2 * per_call, 3)]
        gate.set()
        await asyncio.gather(first, *waiting)


def test_principal_labels_are_bounded():
    labels = BoundedLabels(limit=2)
    assert [labels(p) for p in ("alice", "bob", "carol", "alice", "dave")] == ["alice", "bob", OTHER, "alice", OTHER]


async def test_per_principal_requests_tokens_and_wait():
    a = entry("a")
    s = make([a])
    gate = threading.Event()
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))

        async def as_principal(name: str):
            current_principal.set(name)  # the task's own context, as a request's middleware sets it
            return await s.run(a, ok())

        task = asyncio.create_task(as_principal("key-alice"))
        await until(lambda: len(s.devices["cpu"].queue) == 1)
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, task)
    text = s.metrics.render().decode()
    assert 'loom_principal_requests_total{principal="key-alice"} 1.0' in text
    assert 'loom_principal_requests_total{principal="anonymous"} 1.0' in text
    wait = next(
        line
        for line in text.splitlines()
        if line.startswith('loom_principal_queue_wait_seconds_total{principal="key-alice"}')
    )
    assert float(wait.split()[-1]) >= 0.05


async def test_the_header_on_an_answer_that_queued(tmp_path):
    """Three chat requests to a one-slot model: the first starts at once (no header), the
    others queue behind it, in the order they came."""
    app = mock_app(tmp_path, "concurrency = 1\noptions = { latency_ms = 300 }")
    async with concurrent_client(app) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

        async def post(delay: float) -> httpx.Response:
            await asyncio.sleep(delay)
            return await client.post("/v1/chat/completions", json=body)

        answers = await asyncio.gather(post(0), post(0.1), post(0.2))
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert [r.headers.get(QUEUE_POSITION) for r in answers] == [None, "1", "2"]
        streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
        assert streamed.status_code == 200 and QUEUE_POSITION not in streamed.headers  # nothing ahead


async def test_per_principal_metrics_through_the_api(tmp_path, monkeypatch):
    app = keyed_app(tmp_path, monkeypatch)
    async with concurrent_client(app) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        for key in ("user-one", "user-one", "user-two"):
            r = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        text = (await client.get("/metrics", headers={"Authorization": "Bearer admin-key"})).text
    counts = {
        line.split('principal="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("loom_principal_requests_total{")
    }
    assert sorted(counts.values()) == [1.0, 2.0] and all(p.startswith("key-") for p in counts)
    completion = [
        line
        for line in text.splitlines()
        if line.startswith("loom_principal_tokens_total{") and 'kind="completion"' in line
    ]
    assert len(completion) == 2 and all(float(line.split()[-1]) > 0 for line in completion)
