"""The scheduler with fake providers: residency, eviction, pinning, keep-alive, admission,
cancellation, out-of-memory retries, priorities and affinity. Deterministic: work is held by gates
and simulated costs are sleeps on the device thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from contextlib import asynccontextmanager

import msgspec
import pytest
from loom.daemon.config import Config, DaemonConfig, DeviceBudget, Limits, SchedulerConfig
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler import Priority, Scheduler
from loom.daemon.scheduler.ledger import Ledger, Residency
from loom.daemon.scheduler.oom import is_oom
from loom.daemon.scheduler.policy import AffinityPolicy, FifoPolicy
from loom.sdk.config import ModelConfig
from loom.sdk.errors import Cancelled, OutOfMemory, ProviderError, QueueFull, Unavailable
from loom.sdk.protocols import ModelSpec, Provider, RunContext

MB = 2**20


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError: recognised by class name."""


class FakeProvider(Provider):
    """Simulated footprint and load time; counts loads and unloads; can fail loads with OOM."""

    name = "fake"
    capabilities = frozenset()

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        o = spec.options
        self.mb, self.load_s, self.oom_loads = o.get("mb", 100), o.get("load_s", 0.0), o.get("oom_loads", 0)
        self.loaded = False
        self.loads = self.unloads = 0

    def estimate_bytes(self) -> int:
        return int(self.mb * MB)

    def memory_bytes(self) -> int:
        return self.estimate_bytes()

    def load(self, device: str) -> None:
        if self.oom_loads:
            self.oom_loads -= 1
            raise RuntimeError("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer")
        time.sleep(self.load_s)
        self.loaded = True
        self.loads += 1

    def unload(self) -> None:
        self.loaded = False
        self.unloads += 1


class RemoteProvider(FakeProvider):
    local = False


def entry(
    mid: str,
    *,
    mb: float = 100,
    load_s: float = 0.0,
    keep_alive: float | None = None,
    pin=False,
    concurrency=None,
    max_queue=None,
    cls=FakeProvider,
    vram: int | None = None,
    **opts,
) -> ModelEntry:
    config = ModelConfig(id=mid, provider="fake", pin=pin, concurrency=concurrency, max_queue=max_queue)
    spec = ModelSpec(id=mid, provider="fake", options={"mb": mb, "load_s": load_s, **opts}, device="cpu")
    return ModelEntry(
        config=config,
        provider_cls=cls,
        plugin="test",
        source="config",
        spec=spec,
        capabilities=frozenset(),
        keep_alive=keep_alive,
        vram_override=vram,
    )


def make(
    entries,
    *,
    budget="1000MiB",
    parallel=False,
    policy="affinity",
    max_queue=64,
    queue_timeout=300.0,
    max_age=30.0,
    interval=3600.0,
) -> Scheduler:
    config = Config(
        daemon=DaemonConfig(limits=Limits(max_queue=max_queue, queue_timeout=queue_timeout)),
        scheduler=SchedulerConfig(
            devices={"cpu": DeviceBudget(budget=budget, parallel=parallel)},
            max_age=max_age,
            keep_alive_interval=interval,
        ),
    )
    registry = ModelRegistry()
    for e in entries:
        registry.add(e)
    return Scheduler(config, registry, policy=policy)


@asynccontextmanager
async def running(s: Scheduler):
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def ok(value="ok", seconds=0.0):
    def call(provider, ctx):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ctx.check()
            time.sleep(0.002)
        return value

    return call


def gated(gate: threading.Event, value="ok", started: threading.Event | None = None):
    """A call that holds its slot until ``gate`` is set (checking for cancellation)."""

    def call(provider, ctx):
        if started is not None:
            started.set()
        while not gate.wait(0.005):
            ctx.check()
        return value

    return call


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def resident(s: Scheduler) -> list[str]:
    return sorted(s.devices["cpu"].ledger.resident)


def types(events, kind=None):
    return [(e["type"], e["model"]) for e in events if kind is None or e["type"] == kind]


def drain(sub) -> list[dict]:
    out = []
    while True:
        try:
            out.append(sub._queue.get_nowait())
        except asyncio.QueueEmpty:
            return out


# --- residency and eviction ---------------------------------------------------------------------


async def test_loads_on_demand_and_charges_the_ledger():
    a = entry("a", mb=100)
    s = make([a])
    async with running(s):
        sub = s.events.subscribe()
        assert not s.is_loaded(a)
        assert await s.run(a, ok("hello")) == "hello"
        assert s.is_loaded(a) and a.provider.loads == 1
        assert s.devices["cpu"].ledger.used == 100 * MB
        assert await s.run(a, ok()) == "ok"
        assert a.provider.loads == 1  # stays resident
        kinds = [e["type"] for e in drain(sub)]
        assert kinds[:5] == ["queued", "loaded", "memory", "started", "finished"]


async def test_evicts_least_recently_used_when_costs_are_equal():
    a, b, c = entry("a"), entry("b"), entry("c")
    s = make([a, b, c], budget="250MiB")
    async with running(s):
        await s.run(a, ok())
        await s.run(b, ok())
        await asyncio.sleep(0.05)
        await s.run(a, ok())  # a is now the more recent
        sub = s.events.subscribe()
        await s.run(c, ok())
        assert resident(s) == ["a", "c"]
        assert types(drain(sub), "evicted") == [("evicted", "b")]
        assert s.devices["cpu"].ledger.peak <= 250 * MB


@pytest.mark.parametrize("policy, evicted", [("affinity", "fast"), ("fifo", "slow")])
async def test_eviction_weighs_reload_time(policy, evicted):
    """The slow-to-load model is kept although it was used less recently; FIFO's LRU evicts it."""
    slow, fast, new = entry("slow", load_s=0.6), entry("fast"), entry("new")
    s = make([slow, fast, new], budget="250MiB", policy=policy)
    async with running(s):
        await s.run(slow, ok())
        await s.run(fast, ok())
        await s.run(new, ok())
        assert evicted not in resident(s) and len(resident(s)) == 2


def test_victims_prefer_freeing_bytes_over_many_small_evictions():
    now = 100.0
    small = [Residency(f"s{i}", "cpu", 0, 100 * MB, None, 1.0, last_used=now - 10) for i in range(3)]
    big = Residency("big", "cpu", 0, 400 * MB, None, 1.0, last_used=now - 10)
    chosen = AffinityPolicy().victims([*small, big], 300 * MB, {}, now)
    assert [r.model for r in chosen] == ["big"]
    # FIFO is plain LRU: oldest first, as many as it takes
    small[0].last_used = now - 50
    assert [r.model for r in FifoPolicy().victims([*small, big], 50 * MB, {}, now)] == ["s0"]
    assert AffinityPolicy().victims(small, 1000 * MB, {}, now) is None


def test_queued_demand_keeps_a_model():
    now = 100.0
    a = Residency("a", "cpu", 0, 100 * MB, None, 1.0, last_used=now - 5)
    b = Residency("b", "cpu", 0, 100 * MB, None, 1.0, last_used=now - 1)
    assert [r.model for r in AffinityPolicy().victims([a, b], 50 * MB, {}, now)] == ["a"]
    assert [r.model for r in AffinityPolicy().victims([a, b], 50 * MB, {"a": 3}, now)] == ["b"]


async def test_pinned_models_are_never_evicted():
    a, b, c, huge = entry("a"), entry("b"), entry("c"), entry("huge", mb=200)
    s = make([a, b, c, huge], budget="250MiB")
    async with running(s):
        state = await s.pin(a)
        assert state["pinned"] and state["loaded"]
        await s.run(b, ok())
        await s.run(c, ok())
        assert resident(s) == ["a", "c"]
        with pytest.raises(OutOfMemory, match="pinned"):
            await s.run(huge, ok())  # 200 MiB cannot fit next to the pinned 100 MiB: fail now
        assert resident(s) == ["a", "c"]
        await s.pin(a, False)
        await s.run(huge, ok())
        assert resident(s) == ["huge"]


async def test_pinned_in_config_is_loaded_at_start():
    a = entry("a", pin=True)
    s = make([a])
    async with running(s):
        await until(lambda: s.is_loaded(a))
        assert s.snapshot()["devices"][0]["resident"][0]["pinned"] is True


async def test_explicit_load_and_unload():
    a, b = entry("a", mb=200), entry("b", mb=200)
    s = make([a, b], budget="300MiB")
    async with running(s):
        await s.load(a)
        assert resident(s) == ["a"]
        await s.load(b)
        assert resident(s) == ["b"]
        assert await s.unload(b) is True
        assert resident(s) == [] and s.devices["cpu"].ledger.used == 0
        assert await s.unload(b) is False


async def test_unload_waits_for_running_work():
    a = entry("a")
    s = make([a])
    gate = threading.Event()
    async with running(s):
        task = asyncio.create_task(s.run(a, gated(gate, "done")))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        unloading = asyncio.create_task(s.unload(a))
        await asyncio.sleep(0.05)
        assert not unloading.done() and s.is_loaded(a)
        gate.set()
        assert await task == "done"
        assert await unloading is True
        assert not s.is_loaded(a)


# --- keep-alive -------------------------------------------------------------------------------


async def test_keep_alive_unloads_idle_models():
    timed, forever = entry("timed", keep_alive=10.0), entry("forever", keep_alive=None)
    s = make([timed, forever])
    async with running(s):
        await s.run(timed, ok())
        await s.run(forever, ok())
        now = time.monotonic()
        assert await s.expire_idle(now + 5) == []
        sub = s.events.subscribe()
        assert await s.expire_idle(now + 11) == ["timed"]
        assert resident(s) == ["forever"]
        (unloaded,) = [e for e in drain(sub) if e["type"] == "unloaded"]
        assert unloaded["reason"] == "keep_alive"
        assert await s.expire_idle(now + 10**6) == []


async def test_keep_alive_zero_unloads_right_after_use():
    a = entry("a", keep_alive=0.0)
    s = make([a])
    async with running(s):
        await s.run(a, ok())
        await until(lambda: not s.is_loaded(a))


async def test_keep_alive_job_runs_on_apscheduler():
    a = entry("a", keep_alive=0.1)
    s = make([a], interval=0.05)
    async with running(s):
        await s.run(a, ok())
        assert s.is_loaded(a)
        await until(lambda: not s.is_loaded(a), timeout=3)


async def test_keep_alive_spares_pinned_and_busy_models():
    pinned, busy = entry("pinned", keep_alive=0.0, pin=True), entry("busy", keep_alive=1.0)
    s = make([pinned, busy])
    gate = threading.Event()
    async with running(s):
        await s.run(pinned, ok())
        task = asyncio.create_task(s.run(busy, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("busy"))
        assert await s.expire_idle(time.monotonic() + 100) == []
        gate.set()
        await task


# --- admission ----------------------------------------------------------------------------------


async def test_bounded_queue_answers_queue_full_with_retry_after():
    a = entry("a", max_queue=2)
    s = make([a])
    gate = threading.Event()
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        waiting = [asyncio.create_task(s.run(a, ok())) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as info:
            await s.run(a, ok())
        assert info.value.retry_after >= 1
        assert s.queue_state(a) == (True, 2)
        gate.set()
        assert await first == "ok" and [await w for w in waiting] == ["ok", "ok"]


async def test_queue_wait_limit_answers_unavailable_and_never_runs():
    a = entry("a")
    s = make([a], queue_timeout=0.2)
    gate, ran = threading.Event(), []
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        with pytest.raises(Unavailable, match="Waited"):
            await s.run(a, lambda p, ctx: ran.append(1))
        assert len(s.devices["cpu"].queue) == 0
        gate.set()
        await first
        await asyncio.sleep(0.05)
        assert ran == []


async def test_concurrency_slots_per_model():
    a = entry("a", concurrency=2)
    s = make([a])
    gate = threading.Event()
    async with running(s):
        tasks = [asyncio.create_task(s.run(a, gated(gate))) for _ in range(3)]
        await until(lambda: s.devices["cpu"].busy.get("a") == 2)
        assert s.devices["cpu"].queue.count("a") == 1
        gate.set()
        await asyncio.gather(*tasks)


class SlottedProvider(FakeProvider):
    """Serves ``slots`` calls at once, as a llamacpp model with ``parallel`` slots does."""

    def concurrency(self) -> int:
        return self.spec.options.get("slots", 1)


async def test_a_provider_that_batches_gets_its_slots():
    batched, configured = (
        entry("b", cls=SlottedProvider, slots=3),
        entry("c", cls=SlottedProvider, slots=3, concurrency=1),
    )
    s = make([batched, configured])
    assert s.slots(batched) == 3 and s.slots(configured) == 1  # the model's own concurrency wins
    gate = threading.Event()
    async with running(s):
        tasks = [asyncio.create_task(s.run(batched, gated(gate))) for _ in range(4)]
        await until(lambda: s.devices["cpu"].busy.get("b") == 3)
        assert s.devices["cpu"].queue.count("b") == 1
        gate.set()
        await asyncio.gather(*tasks)


class PreemptingProvider(SlottedProvider):
    """Also serves a call over its slots for each running one of a lower priority that it pauses
    (llamacpp with ``options.preempt``)."""

    def preemption(self) -> int:
        return self.concurrency()


async def test_a_call_that_outranks_a_running_one_starts_over_the_slots_of_a_model_that_preempts():
    m = entry("p", cls=PreemptingProvider, slots=2)
    s = make([m])
    dev = s.devices["cpu"]
    steps, chats = threading.Event(), threading.Event()
    seen: list[int] = []
    async with running(s):
        pipeline = [asyncio.create_task(s.run(m, gated(steps), priority=Priority.PIPELINE)) for _ in range(3)]
        await until(lambda: dev.busy.get("p") == 2)
        assert dev.queue.count("p") == 1  # equals wait for a slot
        # A client's call starts at once, and the provider sees its priority.
        answer = await asyncio.wait_for(s.run(m, lambda provider, ctx: seen.append(ctx.priority) or "hi"), 10)
        assert answer == "hi" and seen == [Priority.INTERACTIVE]
        # Two calls over the slots while two running ones rank below them; a third waits.
        interactive = [asyncio.create_task(s.run(m, gated(chats))) for _ in range(3)]
        await until(lambda: dev.busy.get("p") == 4)
        for _ in range(5):
            await asyncio.sleep(0)  # dispatch passes that could start more
        assert dev.busy.get("p") == 4 and dev.queue.count("p") == 2
        chats.set()
        await asyncio.gather(*interactive)
        steps.set()
        await asyncio.gather(*pipeline)


async def test_a_model_that_does_not_preempt_keeps_to_its_slots():
    m = entry("q", cls=SlottedProvider, slots=2)
    s = make([m])
    dev = s.devices["cpu"]
    gate = threading.Event()
    async with running(s):
        pipeline = [asyncio.create_task(s.run(m, gated(gate), priority=Priority.PIPELINE)) for _ in range(2)]
        await until(lambda: dev.busy.get("q") == 2)
        chat = asyncio.create_task(s.run(m, ok()))
        await until(lambda: dev.queue.count("q") == 1)
        for _ in range(5):
            await asyncio.sleep(0)
        assert dev.busy.get("q") == 2 and not chat.done()
        gate.set()
        await asyncio.gather(chat, *pipeline)


# --- cancellation ----------------------------------------------------------------------------------


async def test_cancel_queued_work_by_id():
    a = entry("a")
    s = make([a])
    gate, ran = threading.Event(), []
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        ctx = RunContext()
        second = asyncio.create_task(s.run(a, lambda p, c: ran.append(1), ctx=ctx))
        await until(lambda: getattr(ctx, "work_id", None) is not None)
        assert s.cancel(ctx.work_id) is True
        with pytest.raises(Cancelled):
            await second
        assert s.cancel(ctx.work_id) is False  # gone
        gate.set()
        await first
        await asyncio.sleep(0.05)
        assert ran == []


async def test_cancel_running_work_by_id():
    a = entry("a")
    s = make([a])
    never = threading.Event()
    async with running(s):
        sub = s.events.subscribe()
        ctx = RunContext()
        task = asyncio.create_task(s.run(a, gated(never), ctx=ctx))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        assert s.cancel(ctx.work_id)
        with pytest.raises(Cancelled):
            await task
        assert not s.devices["cpu"].busy
        assert ("cancelled", "a") in types(drain(sub))
        assert await s.run(a, ok("next")) == "next"  # the slot is free again


async def test_client_cancelling_while_queued_removes_the_item():
    a = entry("a")
    s = make([a])
    gate, ran = threading.Event(), []
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        second = asyncio.create_task(s.run(a, lambda p, c: ran.append(1)))
        await until(lambda: s.devices["cpu"].queue.count("a") == 1)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert s.devices["cpu"].queue.count("a") == 0
        gate.set()
        await first
        await asyncio.sleep(0.05)
        assert ran == []


async def test_client_cancelling_a_running_call_cancels_its_context():
    a = entry("a")
    s = make([a])
    never, started = threading.Event(), threading.Event()
    async with running(s):
        ctx = RunContext()
        task = asyncio.create_task(s.run(a, gated(never, started=started), ctx=ctx))
        await until(started.is_set)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ctx.cancelled
        await until(lambda: not s.devices["cpu"].busy)


async def test_closing_a_stream_cancels_the_generation():
    a = entry("a")
    s = make([a])
    produced = []

    def forever(provider, ctx):
        i = 0
        while True:
            ctx.check()
            produced.append(i)
            yield i
            i += 1
            time.sleep(0.002)

    async with running(s):
        ctx = RunContext()
        gen = s.stream(a, forever, ctx=ctx)
        assert [await gen.__anext__() for _ in range(3)] == [0, 1, 2]
        await gen.aclose()
        assert ctx.cancelled
        await until(lambda: not s.devices["cpu"].busy)
        count = len(produced)
        await asyncio.sleep(0.05)
        assert len(produced) == count  # it really stopped
        assert await s.run(a, ok("after")) == "after"


async def test_stream_and_run_of_generators():
    a = entry("a")
    s = make([a])

    def three(provider, ctx):
        yield from (1, 2, 3)

    async def agen(provider, ctx):
        for i in range(2):
            yield i

    async with running(s):
        assert [x async for x in s.stream(a, three)] == [1, 2, 3]
        assert [x async for x in s.stream(a, agen)] == [0, 1]
        assert await s.run(a, three) == [1, 2, 3]  # drained on the device thread


async def test_provider_errors_keep_the_scheduler_serving():
    a = entry("a")
    s = make([a])

    def boom(provider, ctx):
        raise ValueError("broken")

    async with running(s):
        with pytest.raises(ProviderError, match="broken"):
            await s.run(a, boom)
        assert await s.run(a, ok()) == "ok"


# --- out of memory ------------------------------------------------------------------------------------


async def test_oom_at_load_evicts_others_and_retries_once():
    a, b, c = entry("a"), entry("b"), entry("c", oom_loads=1)
    s = make([a, b, c], budget="1000MiB")
    async with running(s):
        await s.run(a, ok())
        await s.run(b, ok())
        sub = s.events.subscribe()
        assert await s.run(c, ok("fits now")) == "fits now"
        assert resident(s) == ["c"]
        evicted = [e for e in drain(sub) if e["type"] == "evicted"]
        assert {e["model"] for e in evicted} == {"a", "b"} and {e["reason"] for e in evicted} == {"oom"}


async def test_oom_at_load_twice_fails_with_503_and_keeps_serving():
    a, c = entry("a"), entry("c", oom_loads=2)
    s = make([a, c])
    async with running(s):
        await s.run(a, ok())
        with pytest.raises(OutOfMemory):
            await s.run(c, ok())
        assert s.devices["cpu"].ledger.reserved == {}
        assert await s.run(a, ok("still here")) == "still here"


async def test_oom_without_anything_to_evict_fails_at_once():
    c = entry("c", oom_loads=1)
    s = make([c])
    async with running(s):
        with pytest.raises(OutOfMemory):
            await s.run(c, ok())
        assert await s.run(c, ok()) == "ok"  # the next try loads


async def test_oom_at_run_evicts_others_and_retries():
    a, b = entry("a"), entry("b")
    s = make([a, b])
    calls = []

    def flaky(provider, ctx):
        calls.append(1)
        if len(calls) == 1:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "second time"

    async with running(s):
        await s.run(a, ok())
        assert await s.run(b, flaky) == "second time"
        assert resident(s) == ["b"]

        def always(provider, ctx):
            raise OutOfMemoryError("CUDA out of memory")

        await s.run(a, ok())
        with pytest.raises(OutOfMemory, match="even after evicting"):
            await s.run(b, always)
        assert await s.run(b, ok()) == "ok"


def test_oom_recognition():
    assert is_oom(OutOfMemory("x")) and is_oom(MemoryError()) and is_oom(OutOfMemoryError("x"))
    assert is_oom(RuntimeError("llama_context: failed to allocate compute buffer"))
    assert not is_oom(ValueError("bad file")) and not is_oom(Cancelled("out of memory"))


# --- queues: priority, affinity, age ----------------------------------------------------------------


async def test_priority_then_affinity_order():
    a, b = entry("a"), entry("b")
    s = make([a, b], budget="150MiB")  # one model at a time
    gate, order = threading.Event(), []

    def note(name):
        return lambda p, ctx: order.append(name)

    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        tasks = [
            asyncio.create_task(s.run(b, note("b-pipeline"), priority=Priority.PIPELINE)),
            asyncio.create_task(s.run(a, note("a-batch"), priority=Priority.BATCH)),
            asyncio.create_task(s.run(a, note("a-pipeline"), priority=Priority.PIPELINE)),
            asyncio.create_task(s.run(b, note("b-interactive"), priority=Priority.INTERACTIVE)),
        ]
        await until(lambda: len(s.devices["cpu"].queue) == 4)
        gate.set()
        await asyncio.gather(first, *tasks)
        # interactive first (b loads), then pipeline with b resident first, then batch
        assert order == ["b-interactive", "b-pipeline", "a-pipeline", "a-batch"]


async def test_priority_policy_is_arrival_order_within_each_priority():
    """The benchmark's baseline: priorities as affinity has them, nothing for residency."""
    a, b = entry("a"), entry("b")
    s = make([a, b], budget="150MiB", policy="priority")
    gate, order = threading.Event(), []

    def note(name):
        return lambda p, ctx: order.append(name)

    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        tasks = [
            asyncio.create_task(s.run(a, note("a-pipeline"), priority=Priority.PIPELINE)),
            asyncio.create_task(s.run(b, note("b-batch"), priority=Priority.BATCH)),
            asyncio.create_task(s.run(b, note("b-pipeline"), priority=Priority.PIPELINE)),
            asyncio.create_task(s.run(b, note("b-interactive"), priority=Priority.INTERACTIVE)),
        ]
        await until(lambda: len(s.devices["cpu"].queue) == 4)
        gate.set()
        await asyncio.gather(first, *tasks)
        # interactive first, then pipeline in arrival order (affinity would take the resident b's
        # first), then batch
        assert order == ["b-interactive", "a-pipeline", "b-pipeline", "b-batch"]
        assert (a.provider.loads, b.provider.loads) == (2, 2)


@pytest.mark.parametrize("policy, loads", [("affinity", 2), ("fifo", 5)])
async def test_affinity_prefers_the_resident_model(policy, loads):
    a, b = entry("a"), entry("b")
    s = make([a, b], budget="150MiB", policy=policy)
    gate = threading.Event()
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        tasks = [asyncio.create_task(s.run(m, ok(), priority=Priority.PIPELINE)) for m in (b, a, b, a)]
        await until(lambda: len(s.devices["cpu"].queue) == 4)
        gate.set()
        await asyncio.gather(first, *tasks)
        assert a.provider.loads + b.provider.loads == loads


def test_grace_only_for_models_whose_clients_come_back_quickly():
    policy = AffinityPolicy(max_grace=0.05)
    victim = Residency("llm", "cpu", 0, 100 * MB, None, load_seconds=2.0, last_used=10.0, last_priority=1)

    class Item:
        priority = Priority.PIPELINE

        def age(self, now):
            return 0.0

    assert policy.grace(Item(), [victim], 10.01) == 0.0  # nothing seen yet: no waiting
    policy.idle("llm", 10.0)
    policy.arrived("llm", 10.002)  # came back within 2 ms
    assert policy.grace(Item(), [victim], 10.01) == pytest.approx(0.04)
    for t in range(5):  # then it keeps coming back seconds later: stop waiting for it
        policy.idle("llm", 20.0 + t * 10)
        policy.arrived("llm", 25.0 + t * 10)
    assert policy.grace(Item(), [victim], 10.01) == 0.0


@pytest.mark.parametrize("policy, most_loads", [("affinity", 3), ("fifo", 99)])
async def test_interleaved_clients_do_not_swap_on_every_item(policy, most_loads):
    """Clients that send one request per model at a time (the seed's orchestrator): requests for
    two models that do not fit together interleave; affinity plus the grace keeps swaps rare."""
    a, b = entry("a", load_s=0.05), entry("b", load_s=0.05)
    s = make([a, b], budget="150MiB", policy=policy)
    limit = {"a": asyncio.Semaphore(1), "b": asyncio.Semaphore(1)}

    async def call(e):
        async with limit[e.id]:
            return await s.run(e, ok(seconds=0.005), priority=Priority.PIPELINE)

    async def candidate():
        await call(a)
        await call(a)
        await call(b)

    async with running(s):
        await asyncio.gather(*(candidate() for _ in range(4)))
        loads = a.provider.loads + b.provider.loads
        assert loads <= most_loads
        if policy == "fifo":
            assert loads >= 5


async def test_aged_items_go_first():
    a, b = entry("a"), entry("b")
    s = make([a, b], budget="150MiB", max_age=0.1)
    gate, order = threading.Event(), []
    async with running(s):
        first = asyncio.create_task(s.run(a, gated(gate)))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        old = asyncio.create_task(s.run(b, lambda p, c: order.append("b-old"), priority=Priority.BATCH))
        await asyncio.sleep(0.15)
        new = asyncio.create_task(s.run(a, lambda p, c: order.append("a-new"), priority=Priority.INTERACTIVE))
        await until(lambda: len(s.devices["cpu"].queue) == 2)
        gate.set()
        await asyncio.gather(first, old, new)
        assert order == ["b-old", "a-new"]


async def test_interactive_waits_for_at_most_the_running_item():
    chat, image = entry("chat", mb=50), entry("image", mb=100)
    s = make([chat, image], budget="200MiB")
    async with running(s):
        await s.run(chat, ok())
        batch = [asyncio.create_task(s.run(image, ok(seconds=0.05), priority=Priority.BATCH)) for _ in range(10)]
        await until(lambda: s.devices["cpu"].busy.get("image"))
        t0 = time.monotonic()
        await s.run(chat, ok())
        assert time.monotonic() - t0 < 0.2  # about one image item (0.05 s), not the batch (0.5 s)
        assert s.devices["cpu"].queue.count("image") >= 5  # it went ahead of the queued images
        await asyncio.gather(*batch)


async def test_parallel_devices_run_different_models_together():
    for parallel, overlap in ((True, True), (False, False)):
        a, b = entry("a"), entry("b")
        s = make([a, b], parallel=parallel)
        spans = {}

        def span(name, spans=spans):
            def call(provider, ctx):
                t0 = time.monotonic()
                time.sleep(0.1)
                spans[name] = (t0, time.monotonic())

            return call

        async with running(s):
            await s.load(a)
            await s.load(b)
            await asyncio.gather(s.run(a, span("a")), s.run(b, span("b")))
        (a0, a1), (b0, b1) = spans["a"], spans["b"]
        assert (a0 < b1 and b0 < a1) is overlap


async def test_remote_models_run_on_the_loop_without_memory_accounting():
    r = entry("r", mb=10**6, cls=RemoteProvider)
    s = make([r], budget="10MiB")
    inflight, peak = [0], [0]

    async def call(provider, ctx):
        inflight[0] += 1
        peak[0] = max(peak[0], inflight[0])
        await asyncio.sleep(0.05)
        inflight[0] -= 1
        return "remote"

    async with running(s):
        assert s.device_of(r) == "remote"
        results = await asyncio.gather(*(s.run(r, lambda p, ctx: call(p, ctx)) for _ in range(8)))
        assert results == ["remote"] * 8 and peak[0] == 8  # 16 slots by default
        assert s.devices["cpu"].ledger.used == 0


# --- memory is really freed ------------------------------------------------------------------------


class RealMemoryProvider(FakeProvider):
    """Allocates (and touches) N MiB at load and frees them at unload; reports nothing itself."""

    def estimate_bytes(self) -> int:
        return 0

    def memory_bytes(self) -> int:
        return 0

    def load(self, device: str) -> None:
        import numpy as np

        self.block = np.ones(int(self.mb * MB), dtype=np.uint8)

    def unload(self) -> None:
        self.block = None


def rss() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_unloading_really_frees_process_memory():
    big = entry("big", mb=96, cls=RealMemoryProvider)
    s = make([big])
    async with running(s):
        sub = s.events.subscribe()
        base = rss()
        await s.load(big)
        (r,) = s.snapshot()["devices"][0]["resident"]
        assert r["measured"] >= 80 * MB and r["footprint"] == r["measured"]  # measured, not reported
        assert rss() - base >= 80 * MB
        await s.unload(big)
        assert rss() - base < 20 * MB
        (unloaded,) = [e for e in drain(sub) if e["type"] == "unloaded"]
        assert unloaded["freed_measured"] >= 80 * MB


async def test_measured_footprint_over_budget_evicts_or_fails():
    small = entry("small", mb=20)
    liar = entry("liar", mb=96, cls=RealMemoryProvider)  # estimates 0, holds 96 MiB
    s = make([small, liar], budget="100MiB")
    async with running(s):
        await s.run(small, ok())
        await s.run(liar, ok())
        assert resident(s) == ["liar"]  # small was evicted once the real size was known
        assert s.devices["cpu"].ledger.used <= 100 * MB


# --- the ledger and seeing it ------------------------------------------------------------------------


def test_ledger_refuses_to_go_over_budget():
    ledger = Ledger("cpu", 100)
    ledger.reserve("a", 60)
    with pytest.raises(OutOfMemory):
        ledger.reserve("b", 50)
    ledger.commit(Residency("a", "cpu", 60, 60, None, 0.0))
    ledger.reserve("b", 40)
    with pytest.raises(OutOfMemory):
        ledger.commit(Residency("b", "cpu", 40, 41, None, 0.0))
    assert ledger.held == 100 and ledger.peak == 100


async def test_snapshot_and_metrics():
    a = entry("a", keep_alive=300.0)
    s = make([a], budget="500MiB")
    gate = threading.Event()
    async with running(s):
        task = asyncio.create_task(s.run(a, gated(gate), priority=Priority.BATCH))
        await until(lambda: s.devices["cpu"].busy.get("a"))
        queued = asyncio.create_task(s.run(a, ok(), priority=Priority.PIPELINE))
        await until(lambda: len(s.devices["cpu"].queue) == 1)
        snap = s.snapshot()
        cpu = next(d for d in snap["devices"] if d["name"] == "cpu")
        assert cpu["budget"] == 500 * MB and cpu["used"] == 100 * MB and cpu["free"] == 400 * MB
        assert cpu["resident"][0]["model"] == "a" and cpu["resident"][0]["keep_alive"] == 300.0
        assert cpu["queue"]["by_model"] == {"a": {"pipeline": 1}}
        assert cpu["running"][0]["priority"] == "batch"
        text = s.metrics.render().decode()
        for name in (
            "loom_queue_depth",
            "loom_queue_wait_seconds",
            "loom_model_loads_total",
            "loom_device_memory_bytes",
            "loom_run_seconds",
            "loom_model_load_seconds",
        ):
            assert name in text
        gate.set()
        await asyncio.gather(task, queued)


class CudaModel(FakeProvider):
    """Allocates on the (fake) CUDA allocator; reports nothing, so the delta is what counts."""

    def memory_bytes(self) -> int:
        return 0

    def load(self, device: str) -> None:
        assert device == "cuda:0"
        sys.modules["torch"].cuda.allocated += int(self.mb * MB)

    def unload(self) -> None:
        sys.modules["torch"].cuda.allocated -= int(self.mb * MB)


async def test_cuda_devices_through_torch(monkeypatch):
    """With torch present: CUDA discovery, "%" budgets, "auto" placement, allocator deltas, and
    empty_cache after an unload (a fake torch module; no GPU needed)."""
    import contextlib
    import types

    class FakeCuda:
        allocated, emptied = 0, 0

        def is_available(self):
            return True

        def device_count(self):
            return 1

        def get_device_properties(self, i):
            return types.SimpleNamespace(total_memory=8 * 2**30)

        def memory_allocated(self, i):
            return self.allocated

        def empty_cache(self):
            self.emptied += 1

        def device(self, i):
            return contextlib.nullcontext()

    torch = types.ModuleType("torch")
    torch.cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", torch)
    gpu = entry("gpu", mb=1024, cls=CudaModel)
    gpu.spec = msgspec.structs.replace(gpu.spec, device="auto")
    config = Config(scheduler=SchedulerConfig(devices={"cuda:0": DeviceBudget(budget="50%", headroom="512MiB")}))
    registry = ModelRegistry()
    registry.add(gpu)
    from loom.daemon.workers.nvml import Nvml

    s = Scheduler(config, registry, nvml=Nvml(object()))  # no NVML: torch is asked
    async with running(s):
        assert s.device_of(gpu) == "cuda:0"
        cuda = s.devices["cuda:0"]
        assert cuda.info.total == 8 * 2**30 and cuda.ledger.budget == 4 * 2**30 - 512 * MB
        await s.load(gpu)
        assert cuda.ledger.resident["gpu"].measured == 1024 * MB
        assert cuda.ledger.resident["gpu"].footprint == 1024 * MB
        sub = s.events.subscribe()
        await s.unload(gpu)
        assert torch.cuda.emptied >= 1 and torch.cuda.allocated == 0
        (unloaded,) = [e for e in drain(sub) if e["type"] == "unloaded"]
        assert unloaded["freed_measured"] == 1024 * MB and unloaded["device"] == "cuda:0"


async def test_a_cuda_device_without_cuda_is_unavailable(monkeypatch):
    import types

    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", torch)  # a CPU-only torch
    gpu = entry("gpu")
    gpu.spec = msgspec.structs.replace(gpu.spec, device="cuda:3")
    s = make([gpu])
    assert not s.devices["cuda:3"].info.available
    async with running(s):
        with pytest.raises(Unavailable, match="not available"):
            await s.run(gpu, ok())


def test_no_torch_at_import():
    import subprocess
    import sys

    code = "import sys, loom.daemon.app, loom.daemon.scheduler; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
