"""The scheduler with models in worker processes next to models in process: a crash fails only
the crashed model's calls and records it unloaded, the next request reloads it, a hung call is
killed after its timeout, and the ledger charges what the worker process holds."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import msgspec
import pytest
from loom.daemon.config import Config, DaemonConfig, DeviceBudget, Limits, SchedulerConfig
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler import Scheduler
from loom.sdk import calls
from loom.sdk.config import ModelConfig
from loom.sdk.errors import ProviderTimeout, WorkerCrashed
from loom.sdk.protocols import ModelSpec, Provider, RunContext
from loom.sdk.types import ChatCompletionRequest
from worker_providers import Probe, ProbeOptions

HERE = Path(__file__).resolve().parent
MB = 2**20


@pytest.fixture(autouse=True)
def worker_env(monkeypatch):
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (path, str(HERE)) if p))


class Local(Provider):
    """In process: answers after a short sleep."""

    name = "local"
    capabilities = frozenset()

    def estimate_bytes(self) -> int:
        return 10 * MB


def probe(mid="probe", *, executor="subprocess", call_timeout=None, concurrency=None, **options) -> ModelEntry:
    return ModelEntry(
        config=ModelConfig(id=mid, provider="probe", concurrency=concurrency),
        provider_cls=Probe,
        plugin="test",
        source="config",
        spec=ModelSpec(id=mid, provider="probe", options=ProbeOptions(**options), device="cpu"),
        capabilities=Probe.capabilities,
        keep_alive=None,
        vram_override=None,
        executor=executor,
        call_timeout=call_timeout,
    )


def local(mid="local") -> ModelEntry:
    return ModelEntry(
        config=ModelConfig(id=mid, provider="local"),
        provider_cls=Local,
        plugin="test",
        source="config",
        spec=ModelSpec(id=mid, provider="local", device="cpu"),
        capabilities=frozenset(),
        keep_alive=None,
        vram_override=None,
    )


def make(*entries, parallel=True, budget="4GiB") -> Scheduler:
    config = Config(
        daemon=DaemonConfig(limits=Limits(queue_timeout=60.0)),
        scheduler=SchedulerConfig(devices={"cpu": DeviceBudget(budget=budget, parallel=parallel)}),
    )
    registry = ModelRegistry()
    for e in entries:
        registry.add(e)
    return Scheduler(config, registry)


def chat(text="hi", max_tokens=5) -> calls.Chat:
    request = msgspec.convert(
        {"model": "p", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens},
        ChatCompletionRequest,
    )
    return calls.Chat(request=request)


def events_of(sub, kind):
    out = []
    while not sub._queue.empty():
        e = sub._queue.get_nowait()
        if e["type"] == kind:
            out.append(e)
    return out


async def test_a_crashed_worker_fails_its_stream_and_the_next_request_reloads_it():
    p, other = probe(token_seconds=0.01), local()
    s = make(p, other)
    await s.start()
    try:
        sub = s.events.subscribe()
        stream = s.stream(p, chat(max_tokens=10_000))
        assert (await stream.__anext__()).text == "0 "
        cpu = s.devices["cpu"]
        pid = cpu.workers["probe"].pid
        assert pid != os.getpid() and s.snapshot()["devices"][0]["resident"][0]["pid"] == pid

        # The other model keeps answering while the crashed one goes down and comes back.
        stop = asyncio.Event()
        answered = []

        async def other_client():
            while not stop.is_set():
                answered.append(await s.run(other, lambda provider, ctx: time.sleep(0.005) or "ok"))

        client = asyncio.create_task(other_client())
        await asyncio.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashed) as info:
            async for _ in stream:
                pass
        assert "model 'probe' crashed" in info.value.message and "SIGKILL" in info.value.message
        await asyncio.sleep(0.05)
        assert "probe" not in cpu.ledger.resident and "probe" not in cpu.workers
        (unloaded,) = [e for e in events_of(sub, "unloaded") if e["model"] == "probe"]
        assert unloaded["reason"] == "crashed" and unloaded["signal"] == "SIGKILL"

        chunks = [c async for c in s.stream(p, chat(max_tokens=3))]
        assert [c.text for c in chunks][:3] == ["0 ", "1 ", "2 "]
        assert cpu.workers["probe"].pid != pid
        stop.set()
        await client
        assert len(answered) > 5 and set(answered) == {"ok"}  # never interrupted
        assert 'reason="crashed"' in s.metrics.render().decode()
    finally:
        await s.stop()
    assert not s.devices["cpu"].workers


async def test_a_hung_call_is_killed_after_its_timeout():
    p = probe(call_timeout=0.5)
    s = make(p)
    await s.start()
    try:
        sub = s.events.subscribe()
        await s.load(p)
        pid = s.devices["cpu"].workers["probe"].pid
        t0 = time.monotonic()
        with pytest.raises(ProviderTimeout, match="produced nothing for 0.5s"):
            await s.run(p, calls.Embed(inputs=["hang"]))
        assert 0.45 < time.monotonic() - t0 < 5
        await asyncio.sleep(0.1)
        (unloaded,) = events_of(sub, "unloaded")
        assert unloaded["reason"] == "killed" and unloaded["signal"] == "SIGKILL"
        assert not alive(pid)
        assert (await s.run(p, calls.Embed(inputs=["ab"]))).vectors == [[2.0]]  # reloaded
    finally:
        await s.stop()


async def test_a_slow_stream_is_not_hung():
    """The timeout is for silence: a stream that keeps producing outlives it."""
    p = probe(call_timeout=0.3, token_seconds=0.1)
    s = make(p)
    await s.start()
    try:
        chunks = [c async for c in s.stream(p, chat(max_tokens=6))]
        assert len(chunks) == 7
    finally:
        await s.stop()


async def test_a_hung_call_in_process_is_abandoned_after_its_timeout():
    release = threading.Event()
    e = local()
    e.call_timeout = 0.3
    s = make(e)
    await s.start()
    try:
        with pytest.raises(ProviderTimeout, match="it was cancelled"):
            await s.run(e, lambda provider, ctx: release.wait(10))  # ignores its context
        assert not s.devices["cpu"].busy
    finally:
        release.set()
        await s.stop()


async def test_the_ledger_charges_what_the_worker_process_holds():
    p = probe(mb=1)  # reports 1 MiB; the process holds an interpreter on top
    s = make(p)
    await s.start()
    try:
        await s.load(p)
        r = s.devices["cpu"].ledger.resident["probe"]
        assert r.measured > 10 * MB and r.footprint == r.measured
        state = s.model_state(p)
        assert state["executor"] == "subprocess" and state["pid"] == s.devices["cpu"].workers["probe"].pid
        sub = s.events.subscribe()
        assert await s.unload(p)
        (unloaded,) = events_of(sub, "unloaded")
        assert unloaded["reason"] == "admin" and unloaded["freed_measured"] > 10 * MB and unloaded["error"] is None
    finally:
        await s.stop()


async def test_cancelling_by_id_reaches_the_worker():
    p = probe(token_seconds=0.02)
    s = make(p)
    await s.start()
    try:
        ctx = RunContext()
        stream = s.stream(p, chat(max_tokens=10_000), ctx=ctx)
        await stream.__anext__()
        assert s.cancel(ctx.work_id)
        with pytest.raises(Exception) as info:
            async for _ in stream:
                pass
        assert type(info.value).__name__ == "Cancelled"
        await asyncio.sleep(0.05)
        assert not s.devices["cpu"].busy and s.is_loaded(p)
    finally:
        await s.stop()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
