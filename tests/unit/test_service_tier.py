"""OpenAI's ``service_tier`` as Loom's priorities: the table, the echo in answers (plain and
streamed, Chat Completions and Responses), a tier OpenAI does not have refused in its error
shape, and a ``priority`` request going before ``default`` ones already queued."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from litestar.testing import TestClient
from loom.daemon.scheduler import Priority
from loom.daemon.service_tier import PRIORITIES, priority_of, tier_used

from tests.unit.mock_apps import concurrent_client, mock_app
from tests.unit.test_scheduler import entry, gated, make, running, until

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_the_table():
    assert priority_of("priority") is Priority.URGENT
    assert priority_of("default") is priority_of("auto") is priority_of(None) is Priority.INTERACTIVE
    assert priority_of("flex") is Priority.BATCH
    assert Priority.URGENT < Priority.INTERACTIVE < Priority.PIPELINE < Priority.BATCH
    assert set(PRIORITIES) == {"auto", "default", "flex", "priority"}
    assert [tier_used(t) for t in (None, "auto", "default", "flex", "priority")] == [
        "default",
        "default",
        "default",
        "flex",
        "priority",
    ]


@pytest.fixture
def client(tmp_path):
    with TestClient(mock_app(tmp_path)) as c:
        yield c


@pytest.mark.parametrize(
    ("asked", "echoed"), [(None, "default"), ("auto", "default"), ("flex", "flex"), ("priority", "priority")]
)
def test_the_answer_says_the_tier_it_ran_at(client, asked, echoed):
    body = CHAT if asked is None else {**CHAT, "service_tier": asked}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["service_tier"] == echoed
    streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert chunks and {c["service_tier"] for c in chunks} == {echoed}
    responses = client.post(
        "/v1/responses", json={"model": "m", "input": "hi", **({"service_tier": asked} if asked else {})}
    )
    assert responses.status_code == 200, responses.text
    assert responses.json()["service_tier"] == echoed


def test_a_tier_openai_does_not_have_is_refused(client):
    r = client.post("/v1/chat/completions", json={**CHAT, "service_tier": "scale"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "service_tier" in error["message"]


async def test_priority_goes_before_default_work_already_waiting():
    a = entry("a")
    s = make([a])
    gate, order = threading.Event(), []

    def note(name):
        return lambda provider, ctx: order.append(name)

    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        tasks = [
            asyncio.create_task(s.run(a, note("flex"), priority=priority_of("flex"))),
            asyncio.create_task(s.run(a, note("default"), priority=priority_of("default"))),
            asyncio.create_task(s.run(a, note("priority"), priority=priority_of("priority"))),
        ]
        await until(lambda: len(s.devices["cpu"].queue) == 3)
        gate.set()
        await asyncio.gather(first, *tasks)
    assert order == ["priority", "default", "flex"]


async def test_the_tier_reaches_the_scheduler(tmp_path):
    """Through the API: with the one slot busy, a flex request queued first starts after a
    priority request queued later (the admin view shows their priorities)."""
    app = mock_app(tmp_path, "concurrency = 1\noptions = { latency_ms = 300 }")
    async with concurrent_client(app) as client:
        done: list[str] = []

        async def post(tier: str, delay: float) -> None:
            await asyncio.sleep(delay)
            r = await client.post("/v1/chat/completions", json={**CHAT, "service_tier": tier})
            assert r.status_code == 200, r.text
            done.append(tier)

        busy = asyncio.create_task(post("default", 0))
        waiting = [asyncio.create_task(post("flex", 0.1)), asyncio.create_task(post("priority", 0.2))]
        await asyncio.sleep(0.25)
        queued = (await client.get("/admin/scheduler")).json()["devices"]
        priorities = [q["priority"] for d in queued for q in d["queued"]]
        assert priorities == ["urgent", "batch"]
        await asyncio.gather(busy, *waiting)
        assert done == ["default", "priority", "flex"]
