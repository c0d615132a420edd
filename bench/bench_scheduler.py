"""What affinity scheduling buys over FIFO with priorities, through the real /v1 routes.

Two daemons run side by side, the same mock models with the same simulated costs (the mock's
``load_seconds``, ``latency_ms`` and ``memory_mb``) on a CPU device with an 8 GiB budget; one
schedules by ``policy = "affinity"``, the other by ``policy = "priority"``: arrival order within
each priority, head-of-line blocking, LRU eviction. Both honour priorities, so what differs is
affinity alone (resident models first, eviction by reload cost, the anticipatory grace). Clients
talk HTTP to ``/v1/chat/completions``, ``/v1/images/generations`` and ``/v1/vision/score`` and send
the priority the routes give (every /v1 call is interactive); loads and queue waits are read from
each daemon's ``/admin/events`` stream.

Workload 1, beam search (seed 004): 4 candidates, keep 2, 3 iterations; each candidate needs an
LLM expansion of WHAT and of HOW, an image and a vision evaluation. LLM (5 GiB), image (6 GiB) and
vision (4 GiB) models: one fits at a time. Two clients drive it:
- "seed client": the seed's orchestrator, candidates concurrently but at most one call in flight
  per model kind (its rate limiter runs local providers at concurrency 1), so requests for the
  three models interleave and the order the daemon serves them in decides how often it swaps;
- "phased client": every WHAT/HOW call, then every image, then every evaluation: the client
  batches by itself, so either policy swaps three times an iteration (shown for honesty).

Workload 2, chat during an image batch: 10 images (the most one request may ask for) at once, then a chat request every
0.2 s; the chat model and the image model fit together. The batch comes either as one request with
``n = 10`` (the scheduler splits it into an item per image, the first at the request's priority and
the rest one lower, so chat passes them) or as 10 requests of one image each (all interactive, as
chat is: nothing lets chat pass them). Reported: the p95 of chat's queue wait, in milliseconds and
in image items (one item = one image's run time).

    .venv/bin/python bench/bench_scheduler.py [--scale 1.0]

``--scale`` multiplies every simulated cost (0.5 halves the run time; the ratios hold).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
from httpx_sse import connect_sse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import loom_server

# model -> (capability, memory GiB, load seconds, latency ms per call)
BEAM_MODELS = {"llm": ("chat", 5, 0.5, 40), "image": ("image", 6, 0.8, 150), "vision": ("vision", 4, 0.3, 30)}
CHAT_MODELS = {"chat": ("chat", 1.5, 0.2, 30), "image": ("image", 6, 0.8, 150)}
BUDGET = "8GiB"
POLICIES = ("affinity", "priority")


def config(policy: str, models: dict, scale: float) -> str:
    blocks = [
        f"""
[[models]]
id = "{mid}"
provider = "mock"
capabilities = ["{capability}"]
keep_alive = "1h"
max_queue = 256
options = {{ memory_mb = {gib * 1024:g}, load_seconds = {load_s * scale:g}, latency_ms = {ms * scale:g} }}
"""
        for mid, (capability, gib, load_s, ms) in models.items()
    ]
    return f"""
[daemon]
log_level = "warning"

[scheduler]
policy = "{policy}"
executor = "inprocess"

[scheduler.devices.cpu]
budget = "{BUDGET}"
""" + "".join(blocks)


class Events:
    """A daemon's scheduler events, read from GET /admin/events on a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("no event stream")

    def _read(self) -> None:
        with httpx.Client(timeout=None) as client, connect_sse(client, "GET", self.url + "/admin/events") as source:
            self.ready.set()
            for sse in source.iter_sse():
                if sse.data:
                    self.events.append(msgspec.json.decode(sse.data))

    def count(self, type_: str, since: float, until: float) -> int:
        return sum(1 for e in list(self.events) if e["type"] == type_ and since <= e["time"] < until)

    def waits(self, model: str, since: float) -> list[float]:
        return [
            e["waited"]
            for e in list(self.events)
            if e["type"] == "started" and e["model"] == model and e["time"] >= since
        ]


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url + "/v1", timeout=120, limits=httpx.Limits(max_connections=64))

    async def post(self, path: str, body: dict) -> dict:
        r = await self.http.post(path, json=body)
        r.raise_for_status()
        return r.json()

    async def chat(self, model: str, prompt: str, seed: int) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "seed": seed, "max_tokens": 16}
        return (await self.post("/chat/completions", body))["choices"][0]["message"]["content"]

    async def image(self, prompt: str, seed: int, n: int = 1) -> str:
        body = {"model": "image", "prompt": prompt, "size": "64x64", "seed": seed, "response_format": "b64_json"}
        if n > 1:
            body["n"] = n
        return (await self.post("/images/generations", body))["data"][0]["b64_json"]

    async def score(self, png_b64: str, text: str) -> dict:
        uri = "data:image/png;base64," + png_b64
        return await self.post("/vision/score", {"model": "vision", "image": uri, "text": text})


async def beam_search(client: Client, events: Events, *, phased: bool, iterations=3, beam=4, keep=2) -> dict:
    one_at_a_time = {kind: asyncio.Semaphore(1) for kind in ("llm", "image", "vision")}

    async def call(kind, coro_fn, *args):
        if phased:
            return await coro_fn(*args)
        async with one_at_a_time[kind]:
            return await coro_fn(*args)

    async def expand(k, i, parent):
        what, how = await asyncio.gather(
            call("llm", client.chat, "llm", f"WHAT of {parent} #{k}.{i}", 2 * i),
            call("llm", client.chat, "llm", f"HOW of {parent} #{k}.{i}", 2 * i + 1),
        )
        return f"{what[:40]} / {how[:40]}"

    async def generate(k, i, prompt):
        return await call("image", client.image, prompt, 100 * k + i)

    async def evaluate(png):
        scores = await call("vision", client.score, png, "a lighthouse at dusk")
        return scores["combined"]

    async def candidate(k, i, parent):
        prompt = await expand(k, i, parent)
        png = await generate(k, i, prompt)
        return await evaluate(png), prompt

    kept = ["a lighthouse at dusk"]
    loads, t_start = [], time.time()
    for k in range(iterations):
        t0 = time.time()
        parents = [kept[i % len(kept)] for i in range(beam)]
        if phased:
            prompts = await asyncio.gather(*(expand(k, i, p) for i, p in enumerate(parents)))
            pngs = await asyncio.gather(*(generate(k, i, p) for i, p in enumerate(prompts)))
            scored = await asyncio.gather(*(evaluate(png) for png in pngs))
            results = list(zip(scored, prompts))
        else:
            results = await asyncio.gather(*(candidate(k, i, p) for i, p in enumerate(parents)))
        kept = [prompt for _, prompt in sorted(results, reverse=True)[:keep]]
        await asyncio.sleep(0.05)  # the last events of the iteration arrive
        loads.append(events.count("loaded", t0, time.time()))
    return {"makespan": time.time() - t_start, "loads": loads}


async def chat_during_batch(
    client: Client, events: Events, scale: float, one_request: bool, images=10, chats=8
) -> dict:
    await client.chat("chat", "warm up", 0)  # both models resident before the batch
    await client.image("warm up", 0)
    since = time.time()
    if one_request:
        batch = [asyncio.create_task(client.image("batch", 0, n=images))]
    else:
        batch = [asyncio.create_task(client.image(f"batch {i}", i)) for i in range(images)]
    await asyncio.sleep(0.1 * scale)
    for i in range(chats):
        await client.chat("chat", f"quick question {i}", i)
        await asyncio.sleep(0.2 * scale)
    await asyncio.gather(*batch)
    await asyncio.sleep(0.05)
    waits = events.waits("chat", since)
    item = CHAT_MODELS["image"][3] / 1000 * scale
    return {"p95": percentile(waits, 95), "item": item, "max": max(waits)}


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def side_by_side(models: dict, scale: float, work) -> dict[str, dict]:
    """Run ``work(client, events)`` against a fresh daemon per policy, at the same time."""
    servers = {policy: loom_server(config(policy, models, scale)) for policy in POLICIES}
    for server in servers.values():
        server.__enter__()
    try:
        clients = {policy: Client(server.url) for policy, server in servers.items()}
        watch = {policy: Events(server.url) for policy, server in servers.items()}
        results = await asyncio.gather(*(work(clients[p], watch[p]) for p in POLICIES))
        for client in clients.values():
            await client.http.aclose()
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
    return dict(zip(POLICIES, results))


async def main(scale: float) -> None:
    t0 = time.time()
    seed = await side_by_side(BEAM_MODELS, scale, lambda c, e: beam_search(c, e, phased=False))
    phased = await side_by_side(BEAM_MODELS, scale, lambda c, e: beam_search(c, e, phased=True))
    chats = {
        "one request, n = 10": await side_by_side(
            CHAT_MODELS, scale, lambda c, e: chat_during_batch(c, e, scale, True)
        ),
        "10 requests, n = 1": await side_by_side(
            CHAT_MODELS, scale, lambda c, e: chat_during_batch(c, e, scale, False)
        ),
    }

    print(
        f"# Scheduler benchmark through /v1 (simulated costs x{scale:g}; {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()})\n"
    )
    print(
        "Beam search, 4 candidates / keep 2 / 3 iterations; LLM 5 GiB, image 6 GiB, vision 4 GiB "
        f'in an {BUDGET} budget. Baseline: FIFO with priorities (policy = "priority").\n'
    )
    print("| client | policy | makespan (s) | model loads per iteration | baseline makespan / this |")
    print("|---|---|---:|---|---:|")
    for name, runs in (("seed client", seed), ("phased client", phased)):
        for policy in POLICIES:
            r = runs[policy]
            ratio = runs["priority"]["makespan"] / r["makespan"]
            loads = ", ".join(str(n) for n in r["loads"])
            print(f"| {name} | {policy} | {r['makespan']:.2f} | {loads} | {ratio:.2f}x |")
    print()
    item_ms = chats["one request, n = 10"]["affinity"]["item"] * 1000
    print(f"Chat every 0.2 s while 10 images wait (one image item = {item_ms:.0f} ms).\n")
    print("| batch | policy | chat wait p95 (ms) | p95 in image items | max wait (ms) |")
    print("|---|---|---:|---:|---:|")
    for batch, chat in chats.items():
        for policy in POLICIES:
            r = chat[policy]
            print(
                f"| {batch} | {policy} | {r['p95'] * 1000:.0f} | {r['p95'] / r['item']:.2f} | {r['max'] * 1000:.0f} |"
            )
    a, f = seed["affinity"], seed["priority"]
    print(
        f"\nWhat affinity alone buys the seed client: {f['makespan'] / a['makespan']:.2f}x shorter makespan, "
        f"loads per iteration at most {max(a['loads'])} (baseline {max(f['loads'])})."
    )
    print(f"\nCommand: .venv/bin/python bench/bench_scheduler.py --scale {scale:g}   ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every simulated cost")
    asyncio.run(main(parser.parse_args().scale))
