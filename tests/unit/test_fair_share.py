"""Fair share: within a priority, the queued work of different principals takes turns, so one
principal's big batch holds another's chat back by at most one of its items (ordering, not
timing)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from loom.daemon.scheduler import Priority, current_principal
from loom.daemon.scheduler.policy import FairShare

from tests.unit.mock_apps import concurrent_client, keyed_app
from tests.unit.test_scheduler import entry, gated, make, running, until


async def submit_as(s, e, principal: str, order: list[str], name: str, priority=Priority.INTERACTIVE):
    current_principal.set(principal)  # this task's context, as a request's middleware sets it

    def call(provider, ctx):
        order.append(name)

    await s.run(e, call, priority=priority)


@pytest.mark.parametrize("policy", ["affinity", "priority"])
async def test_a_chat_waits_for_one_item_of_a_batch_not_all(policy):
    model = entry("a")
    s = make([model], policy=policy)
    gate, order = threading.Event(), []
    async with running(s):
        busy = asyncio.create_task(s.run(model, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        batch = [asyncio.create_task(submit_as(s, model, "alice", order, f"image-{i}")) for i in range(20)]
        await until(lambda: len(s.devices["cpu"].queue) == 20)
        chat = asyncio.create_task(submit_as(s, model, "bob", order, "chat"))
        await until(lambda: len(s.devices["cpu"].queue) == 21)
        queued = next(d for d in s.snapshot()["devices"] if d["name"] == "cpu")["queued"]
        assert [(q["position"], q["principal"]) for q in queued][:3] == [(1, "alice"), (2, "bob"), (3, "alice")]
        gate.set()
        await asyncio.gather(busy, chat, *batch)
    # alice's first turn, then bob's, then the rest of alice's in arrival order.
    assert order == ["image-0", "chat", *[f"image-{i}" for i in range(1, 20)]]


async def test_turns_are_per_priority_and_priority_still_wins():
    model = entry("a")
    s = make([model])
    gate, order = threading.Event(), []
    async with running(s):
        busy = asyncio.create_task(s.run(model, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        tasks = [
            asyncio.create_task(submit_as(s, model, "alice", order, "a-pipeline-0", Priority.PIPELINE)),
            asyncio.create_task(submit_as(s, model, "alice", order, "a-pipeline-1", Priority.PIPELINE)),
            asyncio.create_task(submit_as(s, model, "alice", order, "a-chat-0")),
            asyncio.create_task(submit_as(s, model, "alice", order, "a-chat-1")),
            asyncio.create_task(submit_as(s, model, "bob", order, "b-pipeline-0", Priority.PIPELINE)),
            asyncio.create_task(submit_as(s, model, "bob", order, "b-chat-0")),
        ]
        await until(lambda: len(s.devices["cpu"].queue) == 6)
        gate.set()
        await asyncio.gather(busy, *tasks)
    assert order == ["a-chat-0", "b-chat-0", "a-chat-1", "a-pipeline-0", "b-pipeline-0", "a-pipeline-1"]


def test_turns_alternate_and_a_returning_principal_has_no_credit():
    fair = FairShare()

    class Item:
        def __init__(self, principal, priority=Priority.INTERACTIVE):
            self.principal, self.priority, self.turn = principal, priority, 0

    def stamp(principal, priority=Priority.INTERACTIVE):
        item = Item(principal, priority)
        fair.stamp(item)
        return item

    batch = [stamp("alice") for _ in range(10)]
    assert [i.turn for i in batch] == list(range(10))
    assert stamp("bob").turn == 0 and stamp("bob").turn == 1
    assert stamp("alice", Priority.BATCH).turn == 0  # turns are per priority
    for item in batch[:6]:
        fair.started(item)
    assert stamp("carol").turn == 5  # after what started, not ahead of it


async def test_two_keys_through_the_api(tmp_path, monkeypatch):
    """user-one sends six chats to a one-slot model at once; user-two's one chat, sent while the
    first runs, is answered right after it, before user-one's other five."""
    app = keyed_app(tmp_path, monkeypatch, "concurrency = 1\noptions = { latency_ms = 400 }")
    answered: list[str] = []
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with concurrent_client(app) as client:

        async def chat(key: str, name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            r = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            answered.append(name)

        await asyncio.gather(*(chat("user-one", f"one-{i}", 0.01 * i) for i in range(6)), chat("user-two", "two", 0.1))
    assert answered == ["one-0", "two", "one-1", "one-2", "one-3", "one-4", "one-5"]
