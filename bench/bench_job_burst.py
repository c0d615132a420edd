"""Accepted jobs never fail for load (issue 28): bursts of ``translate`` jobs on the mock models.

A fresh ``loom serve`` per run (default ``[jobs]`` and ``[daemon.limits]``: the running budget
sized from the models' slots, ``max_queue = 64``); ``--clients`` concurrent clients submit
``--jobs`` jobs as fast as they are answered, while one more client sends a chat request to the
mock chat model every 50 ms. Reported per run: how many were accepted, refused (429) and failed
(must be 0), jobs/s from the first submission to the last job's end, and the chat latency during
the burst (p50 / p95).

    .venv/bin/python bench/bench_job_burst.py                 # 300 jobs / 32 clients, 5,000 / 16
    .venv/bin/python bench/bench_job_burst.py --runs 3        # min / median / max of jobs/s
    .venv/bin/python bench/bench_job_burst.py --burst 300:32  # one burst only
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import loom_server, percentile

CONFIG = """
[daemon]
host = "127.0.0.1"
log_level = "warning"

[routes]
chat = "mock-chat"
translation = "mock-translate"

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]

[[models]]
id = "mock-translate"
provider = "mock"
capabilities = ["translation"]
"""
FINAL = ("succeeded", "failed", "cancelled", "interrupted")
CHAT = {"model": "mock-chat", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}


async def burst(url: str, jobs: int, clients: int) -> dict:
    todo = list(range(jobs))
    ids: list[str] = []
    refused = other = 0
    chat_ms: list[float] = []
    chat_errors = 0
    done = asyncio.Event()

    async def client() -> None:
        nonlocal refused, other
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            while todo:
                i = todo.pop()
                body = {"text": f"burst text number {i}", "source": "en", "target": "fr"}
                r = await c.post("/v1/pipelines/translate", json=body)
                if r.status_code == 202:
                    ids.append(r.json()["id"])
                elif r.status_code == 429:
                    refused += 1
                else:
                    other += 1

    async def chatter() -> None:
        nonlocal chat_errors
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            while not done.is_set():
                t = time.perf_counter()
                r = await c.post("/v1/chat/completions", json=CHAT)
                if r.status_code == 200:
                    chat_ms.append((time.perf_counter() - t) * 1000)
                else:
                    chat_errors += 1
                await asyncio.sleep(0.05)

    async def settle(c: httpx.AsyncClient) -> None:
        while True:
            page = (await c.get("/v1/jobs", params={"state": "queued,running", "limit": 1})).json()
            if not page["data"] and not todo:
                return
            await asyncio.sleep(0.25)

    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        prober = asyncio.create_task(chatter())
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        submitted = time.perf_counter() - start
        await settle(c)
        wall = time.perf_counter() - start
        done.set()
        await prober
        states = dict.fromkeys(FINAL, 0)
        offset = 0
        while True:
            page = (await c.get("/v1/jobs", params={"limit": 1000, "offset": offset})).json()
            for j in page["data"]:
                states[j["state"]] += 1
            if not page["has_more"]:
                break
            offset += 1000
    return {
        "jobs": jobs,
        "clients": clients,
        "accepted": len(ids),
        "refused_429": refused,
        "other_errors": other,
        **states,
        "submit_s": submitted,
        "wall_s": wall,
        "jobs_per_s": len(ids) / wall,
        "chat_n": len(chat_ms),
        "chat_errors": chat_errors,
        "chat_p50_ms": percentile(chat_ms, 0.5) if chat_ms else float("nan"),
        "chat_p95_ms": percentile(chat_ms, 0.95) if chat_ms else float("nan"),
    }


def one_run(jobs: int, clients: int) -> dict:
    with loom_server(CONFIG) as server:
        return asyncio.run(burst(server.url, jobs, clients))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--burst", action="append", help="JOBS:CLIENTS (repeatable; default 300:32 and 5000:16)")
    ap.add_argument("--runs", type=int, default=1, help="runs per burst (a fresh daemon each)")
    args = ap.parse_args()
    bursts = [tuple(map(int, b.split(":"))) for b in (args.burst or ["300:32", "5000:16"])]
    failed_any = False
    for jobs, clients in bursts:
        results = []
        for n in range(args.runs):
            r = one_run(jobs, clients)
            results.append(r)
            print(
                f"{jobs} jobs / {clients} clients, run {n + 1}: accepted {r['accepted']}, 429 {r['refused_429']}, "
                f"other errors {r['other_errors']}, succeeded {r['succeeded']}, failed {r['failed']}; "
                f"submitted in {r['submit_s']:.1f} s, all done in {r['wall_s']:.1f} s = {r['jobs_per_s']:.1f} jobs/s; "
                f"chat during the burst ({r['chat_n']} requests, {r['chat_errors']} errors): "
                f"p50 {r['chat_p50_ms']:.1f} ms, p95 {r['chat_p95_ms']:.1f} ms",
                flush=True,
            )
            failed_any |= r["failed"] > 0 or r["succeeded"] != r["accepted"]
        rates = [r["jobs_per_s"] for r in results]
        p50s = [r["chat_p50_ms"] for r in results]
        p95s = [r["chat_p95_ms"] for r in results]
        print(
            f"== {jobs} jobs / {clients} clients, {len(results)} run(s): failed {sum(r['failed'] for r in results)}; "
            f"jobs/s min {min(rates):.1f} median {statistics.median(rates):.1f} max {max(rates):.1f}; "
            f"chat p50 median {statistics.median(p50s):.1f} ms, p95 median {statistics.median(p95s):.1f} ms",
            flush=True,
        )
    sys.exit(1 if failed_any else 0)


if __name__ == "__main__":
    main()
