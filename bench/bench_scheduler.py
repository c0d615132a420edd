"""The scheduler against a FIFO policy on the same simulated costs, side by side in one process.

Workload 1, beam search (seed 004): 4 candidates, keep 2, 3 iterations; each candidate needs an
LLM expansion of WHAT and of HOW, an image and a vision evaluation. LLM (5 GiB), image (6 GiB) and
vision (4 GiB) models on a device with an 8 GiB budget: one of them fits at a time. Costs come
from the mock provider's options (``load_seconds``, ``latency_ms``, ``memory_mb``).

Two clients drive it:
- "seed client": the seed's orchestrator, candidates concurrently, but at most one call in flight
  per model kind (its rate limiter runs local providers at concurrency 1). Requests for the three
  models interleave, so the order the daemon serves them in decides how often it swaps.
- "phased client": all WHAT/HOW calls, then all images, then all evaluations. The client batches
  by itself, so FIFO already swaps three times an iteration; shown for honesty.

Workload 2, interactive chat during an image batch: 16 images at batch priority, chat requests
every 0.2 s at interactive priority; chat model and image model fit together. Reported: the p95
of chat's queue wait, in seconds and in image items (one item = one image's run time).

    .venv/bin/python bench/bench_scheduler.py [--scale 1.0]

``--scale`` multiplies every simulated cost (0.5 halves the run time; the ratios hold).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loom.daemon.config import Config, DeviceBudget, SchedulerConfig
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler import Priority, Scheduler
from loom.plugins.mock import MockOptions, MockProvider
from loom.sdk.config import ModelConfig
from loom.sdk.protocols import ImageJob, ModelSpec
from loom.sdk.types import ChatCompletionRequest

GIB = 1024  # memory_mb per GiB

# model -> (memory GiB, load seconds, latency ms per call)
BEAM_MODELS = {"llm": (5, 0.5, 40), "image": (6, 0.8, 150), "vision": (4, 0.3, 30)}
CHAT_MODELS = {"chat": (1.5, 0.2, 30), "image": (6, 0.8, 150)}
BUDGET = "8GiB"


def registry(models: dict, scale: float) -> ModelRegistry:
    reg = ModelRegistry()
    for mid, (gib, load_s, ms) in models.items():
        options = msgspec.convert(
            {"memory_mb": gib * GIB, "load_seconds": load_s * scale, "latency_ms": ms * scale}, MockOptions
        )
        reg.add(
            ModelEntry(
                config=ModelConfig(id=mid, provider="mock", max_queue=256),
                provider_cls=MockProvider,
                plugin="mock",
                source="config",
                spec=ModelSpec(id=mid, provider="mock", options=options, device="cpu"),
                capabilities=frozenset(),
                keep_alive=None,
                vram_override=None,
            )
        )
    return reg


def scheduler(models: dict, policy: str, scale: float) -> Scheduler:
    config = Config(scheduler=SchedulerConfig(devices={"cpu": DeviceBudget(budget=BUDGET)}))
    return Scheduler(config, registry(models, scale), policy=policy)


def chat_call(prompt: str, seed: int):
    req = msgspec.convert(
        {"model": "x", "messages": [{"role": "user", "content": prompt}], "seed": seed}, ChatCompletionRequest
    )
    return lambda provider, ctx: "".join(chunk.text for chunk in provider.chat(req, ctx))


def image_call(prompt: str, seed: int):
    job = ImageJob(prompt=prompt, width=64, height=64, seed=seed, steps=4)
    return lambda provider, ctx: provider.generate_images(job, ctx)[0]


def score_call(png: bytes, text: str):
    return lambda provider, ctx: provider.score(png, text, ctx)


class Recorder:
    """Collects the scheduler's events: loads per iteration, waits per model."""

    def __init__(self, s: Scheduler) -> None:
        self.sub = s.events.subscribe()
        self.events: list[dict] = []

    def drain(self) -> list[dict]:
        while not self.sub._queue.empty():
            self.events.append(self.sub._queue.get_nowait())
        return self.events

    def count(self, type_: str, since: float, until: float) -> int:
        return sum(1 for e in self.drain() if e["type"] == type_ and since <= e["time"] < until)

    def waits(self, model: str) -> list[float]:
        return [e["waited"] for e in self.drain() if e["type"] == "started" and e["model"] == model]


async def beam_search(s: Scheduler, *, phased: bool, iterations=3, beam=4, keep=2) -> dict:
    llm, image, vision = (s.registry.get(m) for m in ("llm", "image", "vision"))
    rec = Recorder(s)
    one_at_a_time = {kind: asyncio.Semaphore(1) for kind in ("llm", "image", "vision")}

    async def call(kind, entry, fn):
        gate = contextlib.nullcontext() if phased else one_at_a_time[kind]
        async with gate:
            return await s.run(entry, fn, priority=Priority.PIPELINE)

    async def expand(k, i, parent):
        what, how = await asyncio.gather(
            call("llm", llm, chat_call(f"WHAT of {parent} #{k}.{i}", 2 * i)),
            call("llm", llm, chat_call(f"HOW of {parent} #{k}.{i}", 2 * i + 1)),
        )
        return f"{what[:40]} / {how[:40]}"

    async def generate(k, i, prompt):
        return await call("image", image, image_call(prompt, 100 * k + i))

    async def evaluate(prompt, png):
        scores = await call("vision", vision, score_call(png, "a lighthouse at dusk"))
        return 0.5 * 100 * scores.clip + 0.5 * 10 * scores.aesthetic

    async def candidate(k, i, parent):
        prompt = await expand(k, i, parent)
        png = await generate(k, i, prompt)
        return await evaluate(prompt, png), prompt

    kept = ["a lighthouse at dusk"]
    loads, t_start = [], time.time()
    for k in range(iterations):
        t0 = time.time()
        parents = [kept[i % len(kept)] for i in range(beam)]
        if phased:
            prompts = await asyncio.gather(*(expand(k, i, p) for i, p in enumerate(parents)))
            pngs = await asyncio.gather(*(generate(k, i, p) for i, p in enumerate(prompts)))
            scored = await asyncio.gather(*(evaluate(p, png) for p, png in zip(prompts, pngs)))
            results = list(zip(scored, prompts))
        else:
            results = await asyncio.gather(*(candidate(k, i, p) for i, p in enumerate(parents)))
        kept = [prompt for _, prompt in sorted(results, reverse=True)[:keep]]
        await asyncio.sleep(0)
        loads.append(rec.count("loaded", t0, time.time() + 1e-3))
    return {"makespan": time.time() - t_start, "loads": loads}


async def chat_during_batch(s: Scheduler, scale: float, images=16, chats=10) -> dict:
    chat, image = s.registry.get("chat"), s.registry.get("image")
    rec = Recorder(s)
    await s.load(chat)
    await s.load(image)
    batch = [
        asyncio.create_task(s.run(image, image_call(f"batch {i}", i), priority=Priority.BATCH)) for i in range(images)
    ]
    await asyncio.sleep(0.1 * scale)
    for i in range(chats):
        await s.run(chat, chat_call(f"quick question {i}", i), priority=Priority.INTERACTIVE)
        await asyncio.sleep(0.2 * scale)
    await asyncio.gather(*batch)
    waits = rec.waits("chat")
    item = CHAT_MODELS["image"][2] / 1000 * scale
    return {"p95": percentile(waits, 95), "item": item, "max": max(waits)}


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def side_by_side(make, work) -> dict[str, dict]:
    """Run ``work`` on a fresh affinity and a fresh FIFO scheduler at the same time."""
    out = {}
    pair = {policy: make(policy) for policy in ("affinity", "fifo")}
    for s in pair.values():
        await s.start()
    try:
        results = await asyncio.gather(*(work(s) for s in pair.values()))
    finally:
        for s in pair.values():
            await s.stop()
    out.update(zip(pair, results))
    return out


async def main(scale: float) -> None:
    t0 = time.time()
    seed = await side_by_side(lambda p: scheduler(BEAM_MODELS, p, scale), lambda s: beam_search(s, phased=False))
    phased = await side_by_side(lambda p: scheduler(BEAM_MODELS, p, scale), lambda s: beam_search(s, phased=True))
    chat = await side_by_side(lambda p: scheduler(CHAT_MODELS, p, scale), lambda s: chat_during_batch(s, scale))

    print(
        f"# Scheduler benchmark (simulated costs x{scale:g}; {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()})\n"
    )
    print(
        "Beam search, 4 candidates / keep 2 / 3 iterations; LLM 5 GiB, image 6 GiB, vision 4 GiB "
        f"in an {BUDGET} budget.\n"
    )
    print("| client | policy | makespan (s) | model loads per iteration | FIFO makespan / this |")
    print("|---|---|---:|---|---:|")
    for name, runs in (("seed client", seed), ("phased client", phased)):
        for policy in ("affinity", "fifo"):
            r = runs[policy]
            ratio = runs["fifo"]["makespan"] / r["makespan"]
            loads = ", ".join(str(n) for n in r["loads"])
            print(
                f"| {name} | {policy} | {r['makespan']:.2f} | {loads} (max {max(r['loads'])}) | {ratio:.2f}x |"
                if policy == "affinity"
                else f"| {name} | {policy} | {r['makespan']:.2f} | {loads} (max {max(r['loads'])}) | 1.00x |"
            )
    print()
    print(
        f"Interactive chat while a 16-image batch runs (one image item = {chat['affinity']['item'] * 1000:.0f} ms).\n"
    )
    print("| policy | chat wait p95 (ms) | p95 in image items | max wait (ms) |")
    print("|---|---:|---:|---:|")
    for policy in ("affinity", "fifo"):
        r = chat[policy]
        print(f"| {policy} | {r['p95'] * 1000:.0f} | {r['p95'] / r['item']:.2f} | {r['max'] * 1000:.0f} |")
    print()
    a, f = seed["affinity"], seed["fifo"]
    print(
        "Targets: loads per iteration <= 3: "
        f"{'met' if max(a['loads']) <= 3 else 'MISSED'} (max {max(a['loads'])}); "
        f"makespan >= 2.5x shorter than FIFO: {'met' if f['makespan'] / a['makespan'] >= 2.5 else 'MISSED'} "
        f"({f['makespan'] / a['makespan']:.2f}x); chat p95 wait <= one item: "
        f"{'met' if chat['affinity']['p95'] <= chat['affinity']['item'] else 'MISSED'} "
        f"({chat['affinity']['p95'] / chat['affinity']['item']:.2f} items)."
    )
    print(f"\nCommand: .venv/bin/python bench/bench_scheduler.py --scale {scale:g}   ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every simulated cost")
    asyncio.run(main(parser.parse_args().scale))
