"""n-image calls through the scheduler: split into items of ``max_batch`` images, the first at the
call's priority and the rest lower, so a chat request waits for at most one item.

Ordering is checked with gates and the scheduler's events, never with clocks.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from loom.daemon.config import Config, DaemonConfig, DeviceBudget, Limits, SchedulerConfig
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler import Priority, Scheduler
from loom.daemon.scheduler.images import lower, split
from loom.plugins.mock.options import MockOptions
from loom.plugins.mock.provider import MockProvider
from loom.sdk import calls
from loom.sdk.config import ModelConfig
from loom.sdk.errors import Cancelled, ProviderError
from loom.sdk.protocols import ImageJob, ModelSpec, Provider, RunContext
from loom.sdk.types import Capability, ChatCompletionRequest, message

MB = 2**20


class GatedImages(Provider):
    """Records each call's (seed, n) and holds it until the test opens its gate."""

    name = "gated-images"
    capabilities = frozenset({Capability.IMAGE})

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.calls: list[tuple[int | None, int]] = []
        self.gates: dict[int, threading.Event] = {}
        self.started = threading.Event()
        self.fail_seed: int | None = spec.options.get("fail_seed")

    def estimate_bytes(self) -> int:
        return 100 * MB

    def gate(self, seed: int) -> threading.Event:
        return self.gates.setdefault(seed, threading.Event())

    def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        self.calls.append((job.seed, job.n))
        self.started.set()
        if job.seed == self.fail_seed:
            raise ProviderError("this image failed")
        while not self.gate(job.seed).wait(0.005):
            ctx.check()
        return [f"{job.seed + i}".encode() for i in range(job.n)]


class Remote(GatedImages):
    local = False


def entry(mid: str, cls: type[Provider], *, max_batch: int | None = None, **options) -> ModelEntry:
    return ModelEntry(
        config=ModelConfig(id=mid, provider=cls.name, max_batch=max_batch),
        provider_cls=cls,
        plugin="test",
        source="config",
        spec=ModelSpec(id=mid, provider=cls.name, options=options, device="cpu"),
        capabilities=frozenset(cls.capabilities),
        keep_alive=None,
        vram_override=None,
    )


def mock(mid: str, capability: Capability, **options) -> ModelEntry:
    return ModelEntry(
        config=ModelConfig(id=mid, provider="mock"),
        provider_cls=MockProvider,
        plugin="mock",
        source="config",
        spec=ModelSpec(id=mid, provider="mock", options=MockOptions(**options), device="cpu"),
        capabilities=frozenset({capability}),
        keep_alive=None,
        vram_override=None,
    )


def scheduler(*entries: ModelEntry) -> Scheduler:
    config = Config(
        daemon=DaemonConfig(limits=Limits(max_queue=64, queue_timeout=300.0)),
        scheduler=SchedulerConfig(devices={"cpu": DeviceBudget(budget="1000MiB")}, keep_alive_interval=3600.0),
    )
    registry = ModelRegistry()
    for e in entries:
        registry.add(e)
    return Scheduler(config, registry)


async def until(predicate, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def images(n: int, seed: int | None = 10) -> calls.GenerateImages:
    return calls.GenerateImages(job=ImageJob(prompt="a fox", width=64, height=64, n=n, seed=seed))


def test_split_sizes_and_seeds():
    parts = split(images(5, seed=100), 2)
    assert [(p.job.n, p.job.seed) for p in parts] == [(2, 100), (2, 102), (1, 104)]
    base = [p.job.seed for p in split(images(3, seed=None), 1)]
    assert base[1] == base[0] + 1 and base[2] == base[0] + 2  # a random base, consecutive seeds
    assert lower(Priority.INTERACTIVE) is Priority.PIPELINE and lower(Priority.BATCH) is Priority.BATCH


async def test_chat_waits_for_one_image_not_the_request():
    img, chat = entry("img", GatedImages), entry("chat", GatedImages)
    s = scheduler(img, chat)
    sub = s.events.subscribe()
    await s.start()
    try:
        request = asyncio.create_task(s.run(img, images(4, seed=10)))
        await until(lambda: img.provider is not None and img.provider.started.is_set())
        p = img.provider
        assert p.calls == [(10, 1)]  # one image per item; the others wait
        assert s.devices["cpu"].queue.count("img") == 3
        talk = asyncio.create_task(s.run(chat, images(1, seed=99)))  # stands in for a chat call
        await until(lambda: s.devices["cpu"].queue.count("chat") == 1)
        p.gate(10).set()  # the first image ends: the chat goes next, ahead of images 2-4
        await until(lambda: chat.provider is not None and chat.provider.started.is_set())
        assert p.calls == [(10, 1)]
        chat.provider.gate(99).set()
        assert await talk == [b"99"]
        for seed in (11, 12, 13):
            p.gate(seed).set()
        assert await request == [b"10", b"11", b"12", b"13"]
        started = [(e["model"], e["priority"]) for e in _drain(sub) if e["type"] == "started"]
        assert started == [
            ("img", "interactive"),
            ("chat", "interactive"),
            ("img", "pipeline"),
            ("img", "pipeline"),
            ("img", "pipeline"),
        ]
    finally:
        await s.stop()


async def test_max_batch_makes_several_images_per_call():
    img = entry("img", GatedImages, max_batch=2)
    s = scheduler(img)
    await s.start()
    try:
        task = asyncio.create_task(s.run(img, images(5, seed=20)))
        await until(lambda: img.provider is not None and img.provider.started.is_set())
        for seed in (20, 22, 24):
            img.provider.gate(seed).set()
        assert await task == [str(20 + i).encode() for i in range(5)]
        assert img.provider.calls == [(20, 2), (22, 2), (24, 1)]
    finally:
        await s.stop()


async def test_one_failed_image_fails_the_request_and_cancels_the_rest():
    img = entry("img", GatedImages, fail_seed=31)
    s = scheduler(img)
    await s.start()
    try:
        task = asyncio.create_task(s.run(img, images(4, seed=30)))
        await until(lambda: img.provider is not None and img.provider.started.is_set())
        img.provider.gate(30).set()
        with pytest.raises(ProviderError, match="this image failed"):
            await task
        await until(lambda: not s.devices["cpu"].queue.count("img") and not s.devices["cpu"].busy.get("img"))
        assert (32, 1) not in img.provider.calls and (33, 1) not in img.provider.calls
    finally:
        await s.stop()


async def test_cancelling_the_request_cancels_every_item():
    img = entry("img", GatedImages)
    s = scheduler(img)
    ctx = RunContext()
    await s.start()
    try:
        task = asyncio.create_task(s.run(img, images(3, seed=40), ctx=ctx))
        await until(lambda: img.provider is not None and img.provider.started.is_set())
        ctx.cancel()
        with pytest.raises(Cancelled):
            await task
        await until(lambda: not s.devices["cpu"].queue.count("img") and not s.devices["cpu"].busy.get("img"))
        assert img.provider.calls == [(40, 1)]
    finally:
        await s.stop()


async def test_remote_models_take_n_in_one_call():
    img = entry("img", Remote)
    s = scheduler(img)
    await s.start()
    try:
        task = asyncio.create_task(s.run(img, images(3, seed=50)))
        await until(lambda: img.provider is not None and img.provider.started.is_set())
        img.provider.gate(50).set()
        assert await task == [b"50", b"51", b"52"]
        assert img.provider.calls == [(50, 3)]
    finally:
        await s.stop()


async def test_the_mock_with_latency_through_the_scheduler():
    """The real mock provider, its images spread over denoising steps: a chat request sent while
    the first of three images is being made starts before the second image."""
    img, chat = mock("mock-image", Capability.IMAGE, latency_ms=400), mock("mock-chat", Capability.CHAT)
    s = scheduler(img, chat)
    sub = s.events.subscribe()
    await s.start()
    try:
        task = asyncio.create_task(s.run(img, images(3, seed=7)))
        await until(lambda: s.devices["cpu"].busy.get("mock-image") == 1)
        request = ChatCompletionRequest(model="mock-chat", messages=[message("user", content="hi")])
        reply = await s.run(chat, calls.Chat(request=request))
        assert reply and not task.done()
        got = await task
        started = [e["model"] for e in _drain(sub) if e["type"] == "started"]
        assert started == ["mock-image", "mock-chat", "mock-image", "mock-image"]
        # The same images as three one-image requests with consecutive seeds.
        alone = [(await s.run(img, images(1, seed=7 + i)))[0] for i in range(3)]
        assert got == alone
    finally:
        await s.stop()


def _drain(sub) -> list[dict]:
    out = []
    while True:
        try:
            out.append(sub._queue.get_nowait())
        except asyncio.QueueEmpty:
            return out
