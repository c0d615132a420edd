"""Property: over random sequences of requests, streams, loads, unloads, pins, cancels and failures,
the ledger never exceeds its budget, every accepted item ends exactly once, and nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loom.daemon.config import Config, DaemonConfig, DeviceBudget, Limits, SchedulerConfig
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler import Priority, Scheduler
from loom.sdk.config import ModelConfig
from loom.sdk.errors import LoomError
from loom.sdk.protocols import ModelSpec, Provider, RunContext

MB = 2**20
BUDGET = 300 * MB
SIZES = (60, 100, 150, 250)


class Flaky(Provider):
    """Footprint from the options; loads fail (OOM or otherwise) when the test says so."""

    name = "flaky"
    capabilities = frozenset()

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.faults: dict = spec.options["faults"]

    def estimate_bytes(self) -> int:
        return self.spec.options["mb"] * MB

    def load(self, device: str) -> None:
        fault = self.faults.pop(self.spec.id, None)
        if fault == "oom":
            raise MemoryError("failed to allocate")
        if fault == "error":
            raise RuntimeError("bad weights")
        time.sleep(0.001)


def call_for(kind: str, ms: int):
    state = {"n": 0}

    def call(provider, ctx):
        state["n"] += 1
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            ctx.check()
            time.sleep(0.0005)
        if kind == "error":
            raise ValueError("provider bug")
        if kind == "oom" or (kind == "oom_once" and state["n"] == 1):
            raise MemoryError("out of memory")
        return "ok"

    return call


def chunks_for(n: int):
    def gen(provider, ctx):
        for i in range(n):
            ctx.check()
            yield i

    return gen


model = st.integers(0, len(SIZES) - 1)
priority = st.sampled_from(list(Priority))
op = st.one_of(
    st.tuples(
        st.just("run"), model, priority, st.integers(0, 4), st.sampled_from(["ok", "ok", "error", "oom_once", "oom"])
    ),
    st.tuples(st.just("stream"), model, priority, st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3))),
    st.tuples(st.just("load"), model),
    st.tuples(st.just("unload"), model),
    st.tuples(st.just("pin"), model, st.booleans()),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("disconnect"), st.integers(0, 30)),
    st.tuples(st.just("fault"), model, st.sampled_from(["oom", "error"])),
    st.tuples(st.just("sleep"), st.integers(0, 3)),
)


async def scenario(ops, policy: str) -> None:
    faults: dict[str, str] = {}
    registry = ModelRegistry()
    entries = []
    for i, mb in enumerate(SIZES):
        mid = f"m{i}"
        e = ModelEntry(
            config=ModelConfig(id=mid, provider="flaky", max_queue=6),
            provider_cls=Flaky,
            plugin="test",
            source="config",
            spec=ModelSpec(id=mid, provider="flaky", options={"mb": mb, "faults": faults}, device="cpu"),
            capabilities=frozenset(),
            keep_alive=0.0 if i == 0 else None,
            vram_override=None,
        )
        registry.add(e)
        entries.append(e)
    config = Config(
        daemon=DaemonConfig(limits=Limits(queue_timeout=10.0)),
        scheduler=SchedulerConfig(devices={"cpu": DeviceBudget(budget=f"{BUDGET}")}, max_age=0.02),
    )
    s = Scheduler(config, registry, policy=policy)
    await s.start()
    sub = s.events.subscribe()
    tasks: list[asyncio.Task] = []
    contexts: list[RunContext] = []

    async def consume(gen, close_after):
        got = 0
        try:
            async for _ in gen:
                got += 1
                if close_after is not None and got >= close_after:
                    break
        finally:
            await gen.aclose()

    try:
        for o in ops:
            kind = o[0]
            if kind == "run":
                _, i, prio, ms, how = o
                ctx = RunContext()
                contexts.append(ctx)
                tasks.append(asyncio.create_task(s.run(entries[i], call_for(how, ms), priority=prio, ctx=ctx)))
            elif kind == "stream":
                _, i, prio, n, close_after = o
                ctx = RunContext()
                contexts.append(ctx)
                gen = s.stream(entries[i], chunks_for(n), priority=prio, ctx=ctx)
                tasks.append(asyncio.create_task(consume(gen, close_after)))
            elif kind == "load":
                tasks.append(asyncio.create_task(s.load(entries[o[1]])))
            elif kind == "unload":
                tasks.append(asyncio.create_task(s.unload(entries[o[1]])))
            elif kind == "pin":
                tasks.append(asyncio.create_task(s.pin(entries[o[1]], o[2])))
            elif kind == "cancel":
                if contexts:
                    work_id = getattr(contexts[o[1] % len(contexts)], "work_id", None)
                    if work_id:
                        s.cancel(work_id)
            elif kind == "disconnect":
                if tasks:
                    tasks[o[1] % len(tasks)].cancel()
            elif kind == "fault":
                faults[entries[o[1]].id] = o[2]
            elif kind == "sleep":
                await asyncio.sleep(o[1] / 1000)
            await asyncio.sleep(0)
        done, pending = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
        assert not pending, f"{len(pending)} calls never ended"
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                assert isinstance(t.exception(), LoomError), repr(t.exception())
        # loads started for items whose clients left, and keep-alive-0 unloads, finish on their own
        deadline = time.monotonic() + 10
        while s.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.005)

        # nothing lost: no item queued or running, no reservation, no load in flight
        dev = s.devices["cpu"]
        assert len(dev.queue) == 0 and not dev.running and not dev.busy and not s.dispatcher.items
        assert dev.ledger.reserved == {} and dev.loading is None
        # the ledger never went over budget
        assert dev.ledger.peak <= BUDGET
        assert dev.ledger.held <= BUDGET
        # every accepted item ended exactly once
        events = []
        while not sub._queue.empty():
            events.append(sub._queue.get_nowait())
        queued = [e["item"] for e in events if e["type"] == "queued"]
        ends = Counter(e["item"] for e in events if e["type"] in ("finished", "failed", "cancelled") and e["item"])
        assert len(queued) == len(set(queued))
        for item in queued:
            assert ends[item] == 1, f"{item} ended {ends[item]} times"
        assert set(ends) == set(queued)
        # resident models match what the ledger was told
        loaded = sum(1 for e in events if e["type"] == "loaded")
        gone = sum(1 for e in events if e["type"] in ("evicted", "unloaded"))
        assert loaded - gone == len(dev.ledger.resident)
    finally:
        await s.stop()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=30), policy=st.sampled_from(["affinity", "priority", "fifo"]))
def test_scheduler_invariants(ops, policy):
    asyncio.run(scenario(ops, policy))
