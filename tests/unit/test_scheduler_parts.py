"""Each part of the scheduler alone, with stand-ins for the others: residency (typed load plans,
loads through an executor, what a crashed worker leaves), dispatch (admission and start order
with a stub residency and execution), execution (the watchdog), and the snapshot function."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from loom.daemon.config import Config, DaemonConfig, Limits
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler.devices import Device
from loom.daemon.scheduler.dispatch import Dispatcher
from loom.daemon.scheduler.events import EventBus
from loom.daemon.scheduler.execution import Execution
from loom.daemon.scheduler.ledger import Ledger, Residency
from loom.daemon.scheduler.metrics import SchedulerMetrics
from loom.daemon.scheduler.policy import AffinityPolicy
from loom.daemon.scheduler.queues import Priority, WorkItem
from loom.daemon.scheduler.residency import LoadPlan, Residents
from loom.daemon.scheduler.state import DeviceState
from loom.daemon.scheduler.tasks import TaskSet
from loom.daemon.workers import LoadReport, WorkerExit, WorkerMemory
from loom.sdk.config import ModelConfig
from loom.sdk.errors import OutOfMemory, ProviderTimeout, QueueFull
from loom.sdk.protocols import ModelSpec, Provider, RunContext

MB = 2**20


class Sized(Provider):
    name = "sized"
    capabilities = frozenset()

    def estimate_bytes(self) -> int:
        return self.spec.options["mb"] * MB


def entry(mid: str, mb: int = 100, timeout: float | None = None) -> ModelEntry:
    return ModelEntry(
        config=ModelConfig(id=mid, provider="sized"),
        provider_cls=Sized,
        plugin="test",
        source="config",
        spec=ModelSpec(id=mid, provider="sized", options={"mb": mb}, device="cpu"),
        capabilities=frozenset(),
        keep_alive=None,
        vram_override=None,
        executor="fake",
        call_timeout=timeout,
    )


def device(budget_mb: int | None = 1000) -> DeviceState:
    budget = None if budget_mb is None else budget_mb * MB
    return DeviceState(Device("cpu", "cpu", budget, budget), Ledger("cpu", budget))


class FakeWorker:
    """A worker that holds ``measured`` bytes and whose calls wait until told."""

    executor = "fake"

    def __init__(self, model: str, measured: int) -> None:
        self.model, self.device, self.pid = model, "cpu", 4242
        self.loaded = LoadReport(seconds=0.5, reported=10 * MB, measured=measured, whole=True)
        self.exited = asyncio.get_running_loop().create_future()
        self.killed: list[str] = []
        self.release = asyncio.Event()

    async def call(self, work: Any, ctx: RunContext) -> Any:
        await self.release.wait()
        return "done"

    async def stream(self, work, ctx):
        yield "chunk"

    async def memory(self) -> WorkerMemory:
        return WorkerMemory(host=self.loaded.measured)

    def kill(self, reason: str) -> bool:
        self.killed.append(reason)
        return False  # like a worker in process: it cannot end

    def crash(self) -> None:
        self.exited.set_result(WorkerExit(reason="crashed", returncode=-11, signal="SIGSEGV", detail="segfault"))

    async def stop(self) -> WorkerExit:
        if not self.exited.done():
            self.exited.set_result(WorkerExit(reason="stopped", returncode=0, freed=self.loaded.measured))
        return self.exited.result()


class FakeExecutor:
    name = "fake"
    cluster = False

    def __init__(self, measured: int = 150 * MB) -> None:
        self.measured = measured
        self.started: list[FakeWorker] = []

    async def start(self, entry, device, concurrency):
        worker = FakeWorker(entry.id, self.measured)
        self.started.append(worker)
        return worker

    async def close(self) -> None:
        pass


def residents(dev: DeviceState, *entries: ModelEntry, executor=None, changed=None) -> Residents:
    registry = ModelRegistry()
    for e in entries:
        registry.add(e)
    devices = {"cpu": dev}
    return Residents(
        registry=registry,
        devices=devices,
        policy=AffinityPolicy(),
        executors={"fake": executor or FakeExecutor()},
        events=EventBus(),
        metrics=SchedulerMetrics(devices),
        pinned=set(),
        slots=lambda e: 1,
        changed=changed or (lambda d: None),
    )


def resident(dev: DeviceState, m: str, mb: int, *, pinned=False, busy=False) -> Residency:
    r = Residency(m, "cpu", mb * MB, mb * MB, None, 1.0, pinned=pinned)
    dev.ledger.commit(r)
    if busy:
        dev.busy[m] += 1
    return r


# --- residency ---------------------------------------------------------------------------------------


async def test_load_plans_are_typed_and_say_why():
    dev = device(300)
    a, b, big, huge = entry("a"), entry("b"), entry("big", 250), entry("huge", 400)
    part = residents(dev, a, b, big, huge)
    now = time.monotonic()
    assert part.plan(dev, a, now) == LoadPlan("go", 100 * MB)
    resident(dev, "old", 150)
    resident(dev, "pinned", 100, pinned=True)
    plan = part.plan(dev, big, now)
    assert (
        plan.verdict == "never" and "needs 250 MiB but the cpu budget is 300 MiB, 100 MiB of it pinned" in plan.reason
    )
    plan = part.plan(dev, b, now)
    assert plan.verdict == "go" and [v.model for v in plan.victims] == ["old"]
    dev.busy["old"] += 1
    assert part.plan(dev, b, now).verdict == "wait"  # the busy model holds the memory
    assert part.plan(dev, huge, now).verdict == "never"


async def test_a_load_charges_what_the_worker_measured_and_a_crash_releases_it():
    dev = device(1000)
    a = entry("a", 100)
    changes = []
    executor = FakeExecutor(measured=150 * MB)
    part = residents(dev, a, executor=executor, changed=changes.append)
    sub = part.events.subscribe()
    plan = part.plan(dev, a, time.monotonic())
    part.begin(dev, a, plan)
    assert dev.loading == "a"
    r = await part.load(dev, a, plan)
    assert dev.loading is None and r.footprint == 150 * MB and r.measured == 150 * MB
    assert dev.ledger.used == 150 * MB and dev.workers["a"] is executor.started[0]
    executor.started[0].crash()
    await asyncio.sleep(0)
    assert dev.ledger.used == 0 and not dev.workers and changes[-1] is dev
    events = list(iter(lambda: sub._queue.get_nowait() if not sub._queue.empty() else None, None))
    (unloaded,) = [e for e in events if e["type"] == "unloaded"]
    assert unloaded["reason"] == "crashed" and unloaded["signal"] == "SIGSEGV" and unloaded["error"] == "segfault"


async def test_a_load_that_turns_out_too_big_evicts_or_stops_its_worker():
    dev = device(300)
    a = entry("a", 100)
    executor = FakeExecutor(measured=400 * MB)
    part = residents(dev, a, executor=executor)
    plan = part.plan(dev, a, time.monotonic())
    with pytest.raises(OutOfMemory, match="holds 400 MiB once loaded"):
        await part.load(dev, a, plan)
    assert executor.started[0].exited.result().reason == "stopped"
    assert dev.ledger.held == 0 and not dev.workers


async def test_an_unload_stops_the_worker_and_reports_what_it_freed():
    dev = device(1000)
    a = entry("a")
    part = residents(dev, a)
    sub = part.events.subscribe()
    await part.load(dev, a, part.plan(dev, a, time.monotonic()))
    worker = dev.workers["a"]
    async with dev.op_lock:
        assert await part.unload_now(dev, "a", "admin") == 150 * MB
    assert worker.exited.result().reason == "stopped" and not dev.workers
    events = []
    while not sub._queue.empty():
        events.append(sub._queue.get_nowait())
    (unloaded,) = [e for e in events if e["type"] == "unloaded"]
    assert unloaded["freed_measured"] == 150 * MB and unloaded["error"] is None


# --- dispatch ----------------------------------------------------------------------------------------


class StubResidents:
    """Loads at once (committing the estimate); counts loads."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.dispatcher: Dispatcher | None = None

    def plan(self, dev, entry, now):
        return LoadPlan("go", 0)

    def begin(self, dev, entry, plan):
        dev.loading = entry.id

    async def load(self, dev, entry, plan):
        self.loads.append(entry.id)
        dev.ledger.commit(Residency(entry.id, "cpu", 0, 0, None, 0.0))
        dev.loading = None
        self.dispatcher.kick(dev)

    async def expire(self, dev, m, now=None):
        return False


class StubExecution:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gate = asyncio.Event()

    async def execute(self, dev, item):
        await self.gate.wait()
        self.ran.append(item.call)
        return item.call, None


def dispatcher(dev: DeviceState, max_queue: int = 64):
    config = Config(daemon=DaemonConfig(limits=Limits(max_queue=max_queue, queue_timeout=5)))
    devices = {"cpu": dev}
    stub, execution = StubResidents(), StubExecution()
    d = Dispatcher(
        config=config,
        devices=devices,
        policy=AffinityPolicy(),
        residents=stub,
        execution=execution,
        events=EventBus(),
        metrics=SchedulerMetrics(devices),
        tasks=TaskSet(),
        slots=lambda e: 1,
    )
    stub.dispatcher = d
    return d, stub, execution


async def test_dispatch_loads_once_then_runs_in_priority_order():
    dev = device()
    d, stub, execution = dispatcher(dev)
    a = entry("a")
    items = [
        d.submit(dev, a, "batch", Priority.BATCH, None),
        d.submit(dev, a, "pipeline", Priority.PIPELINE, None),
        d.submit(dev, a, "interactive", Priority.INTERACTIVE, None),
    ]
    await asyncio.sleep(0.01)
    assert stub.loads == ["a"] and dev.busy["a"] == 1  # one slot: one runs, two wait
    execution.gate.set()
    assert [await i.done for i in items] == ["batch", "pipeline", "interactive"]
    assert execution.ran == ["interactive", "pipeline", "batch"]
    assert not d.items and not dev.busy


async def test_dispatch_admission_and_cancel_by_id():
    dev = device()
    d, _, execution = dispatcher(dev, max_queue=1)
    a = entry("a")
    first = d.submit(dev, a, "first", Priority.INTERACTIVE, None)
    await asyncio.sleep(0.01)
    second = d.submit(dev, a, "second", Priority.INTERACTIVE, None)
    with pytest.raises(QueueFull):
        d.submit(dev, a, "third", Priority.INTERACTIVE, None)
    assert d.cancel(second.id) and second.outcome == "cancelled"
    execution.gate.set()
    assert await first.done == "first"
    assert execution.ran == ["first"]


# --- execution ---------------------------------------------------------------------------------------


def work(e: ModelEntry) -> WorkItem:
    return WorkItem(entry=e, device="cpu", priority=Priority.INTERACTIVE, call="call", ctx=RunContext(), seq=0)


class OneWorker:
    def __init__(self, worker) -> None:
        self._worker = worker

    def worker(self, dev, m):
        return self._worker

    async def evict_for_oom(self, dev, keep):
        return 0


async def test_the_watchdog_kills_a_silent_call_and_progress_keeps_it_alive():
    dev = device()
    worker = FakeWorker("a", 0)
    execution = Execution(OneWorker(worker), SchedulerMetrics({"cpu": dev}))
    item = work(entry("a", timeout=0.2))
    t0 = time.monotonic()
    result, error = await execution.execute(dev, item)
    assert isinstance(error, ProviderTimeout) and worker.killed and 0.18 < time.monotonic() - t0 < 2
    assert not asyncio.current_task().cancelling()  # the watchdog's cancel did not leak

    worker = FakeWorker("a", 0)
    execution = Execution(OneWorker(worker), SchedulerMetrics({"cpu": dev}))
    item = work(entry("a", timeout=0.2))

    async def report_then_release():
        for i in range(6):
            await asyncio.sleep(0.1)
            item.ctx.report(i, 6)
        worker.release.set()

    asyncio.ensure_future(report_then_release())
    result, error = await execution.execute(dev, item)
    assert (result, error) == ("done", None) and not worker.killed


# --- snapshot ----------------------------------------------------------------------------------------


async def test_snapshot_shows_each_resident_models_worker():
    from loom.daemon.config import SchedulerConfig
    from loom.daemon.scheduler import Scheduler
    from loom.daemon.workers.nvml import Nvml

    a = entry("a")
    registry = ModelRegistry()
    registry.add(a)
    s = Scheduler(
        Config(scheduler=SchedulerConfig()), registry, executors={"fake": FakeExecutor()}, nvml=Nvml(object())
    )
    await s.start()
    try:
        await s.load(a)
        (cpu,) = [d for d in s.snapshot()["devices"] if d["name"] == "cpu"]
        (r,) = cpu["resident"]
        assert (r["model"], r["executor"], r["pid"], r["footprint"]) == ("a", "fake", 4242, 150 * MB)
        assert s.model_state(a)["pid"] == 4242
    finally:
        await s.stop()


def test_a_streams_chunks_are_checked_where_they_reach_the_daemon():
    """A dict instead of a TextChunk, or text after the finish_reason chunk: a 502 naming the rule."""
    from loom.daemon.scheduler.chunks import ChunkCheck
    from loom.sdk import TextChunk, calls
    from loom.sdk.errors import ProviderError
    from loom.sdk.types import ChatCompletionRequest

    call = calls.Chat(request=ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
    check = ChunkCheck("m", call)
    check(TextChunk(text="a"))
    with pytest.raises(ProviderError, match=r"chat\(\) yielded a dict; a stream yields loom.sdk.TextChunk"):
        check({"text": "b"})
    check(TextChunk(finish_reason="stop", prompt_tokens=1, completion_tokens=1))
    with pytest.raises(ProviderError, match="after the one with finish_reason"):
        check(TextChunk(text="late"))
    ChunkCheck("m", lambda provider, ctx: None)("anything")  # an in-process function: not a stream call
