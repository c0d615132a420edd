"""Beam search (N=4, M=2, 3 iterations): phase by phase vs. item by item, and pairwise vs. score
ranking, on a one-model device.

Three mock models (LLM, image, vision) with simulated costs: each takes ``load_seconds`` to load,
``latency_ms`` per call and ``memory_mb`` of memory, on a CPU device whose budget holds only one
of them at a time, so every change of model is an eviction and a load. The same search runs
twice on a fresh daemon each:

- ``phased``: the pipeline's default; all LLM calls of an iteration, then all images, then all
  evaluations (at most three swaps an iteration);
- ``sequential``: the same calls submitted one at a time in arrival order, candidate by
  candidate (what the seed's per-candidate streams amount to on one card).

Then ranking: ``score`` (by alpha*CLIP + (1-alpha)*aesthetic, no extra calls) against
``pairwise`` (a judge, here a mock vision chat model with the same simulated costs, compares two
images at a time; merge sort, the parents' order reused), both phased: comparisons per iteration
against the documented bound and the seed's all-pairs count, model loads and makespan.

Model loads are counted from the scheduler's snapshot where it has them and, always, from the
mock providers' own ``loads`` counters (the daemon runs in this process). Run:

    .venv/bin/python bench/bench_beam_search.py
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ".venv/bin/python bench/bench_beam_search.py"

LOAD_S = {"bench-llm": 0.8, "bench-image": 1.2, "bench-vision": 0.5, "bench-judge": 0.5}
LATENCY_MS = {"bench-llm": 40, "bench-image": 150, "bench-vision": 40, "bench-judge": 40}
CAPABILITIES = {
    "bench-llm": '"chat"',
    "bench-image": '"image"',
    "bench-vision": '"vision"',
    "bench-judge": '"vision", "chat"',
}
MEMORY_MB = 600
BUDGET = "1000MB"  # holds one 600 MB model, never two

CONFIG = f"""
[daemon]
host = "127.0.0.1"
log_level = "warning"

[scheduler.devices.cpu]
budget = "{BUDGET}"

[routes]
chat = "bench-llm"
image = "bench-image"
vision = "bench-vision"
judge = "bench-judge"
""" + "".join(
    f"""
[[models]]
id = "{model}"
provider = "mock"
capabilities = [{cap}]
keep_alive = "30m"
options = {{ load_seconds = {LOAD_S[model]}, latency_ms = {LATENCY_MS[model]}, memory_mb = {MEMORY_MB} }}
"""
    for model, cap in CAPABILITIES.items()
)

PARAMS = {
    "prompt": "a lighthouse on a cliff at dusk",
    "beam_width": 4,
    "keep_top": 2,
    "iterations": 3,
    "width": 128,
    "height": 128,
    "seed": 11,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InProcessDaemon:
    """``create_app`` served by uvicorn on a thread, so the providers' counters can be read."""

    def __init__(self, data_dir: Path) -> None:
        import uvicorn
        from loom.daemon.app import app_for
        from loom.daemon.config import check_config, decode_config

        raw = tomllib.loads(CONFIG)
        raw["daemon"]["data_dir"] = str(data_dir)
        config = decode_config(raw, "bench")
        check_config(config)
        from loom.daemon.services import build_services

        self.services = build_services(config)
        self.app = app_for(self.services)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessDaemon:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("daemon did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def provider_loads(self) -> dict[str, int]:
        out = {}
        for model in LOAD_S:
            provider = self.services.registry.get(model).provider
            out[model] = getattr(provider, "loads", 0) if provider is not None else 0
        return out

    def snapshot_peak(self) -> int | None:
        snap = getattr(self.services.scheduler, "snapshot", None)
        if snap is None:
            return None
        try:
            cpu = next(d for d in snap()["devices"] if d["name"] == "cpu")
            return cpu.get("peak")
        except Exception:
            return None


def run(schedule: str, ranking: str = "score") -> dict:
    with tempfile.TemporaryDirectory(prefix="loom-bench-beam-") as tmp, InProcessDaemon(Path(tmp)) as d:
        with httpx.Client(base_url=d.url, timeout=60) as client:
            t0 = time.perf_counter()
            r = client.post("/v1/pipelines/beam_search", json={**PARAMS, "schedule": schedule, "ranking": ranking})
            r.raise_for_status()
            job_id = r.json()["id"]
            while True:
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
                    break
                time.sleep(0.05)
            wall = time.perf_counter() - t0
            if job["state"] != "succeeded":
                raise RuntimeError(f"{schedule}: job {job['state']}: {job['error']}")
            lineage = client.get(f"/v1/jobs/{job_id}/lineage").json()
        loads = d.provider_loads()
        calls = {cap: int(v["calls"]) for cap, v in job["timings"]["by_capability"].items()}
        comparisons = job["result"].get("comparisons") or {}
        return {
            "schedule": schedule,
            "ranking": ranking,
            "comparisons": comparisons.get("by_iteration", [0] * PARAMS["iterations"]),
            "bounds": comparisons.get("bound_by_iteration"),
            "wall": wall,
            "run": job["timings"]["run_seconds"],
            "loads": loads,
            "total_loads": sum(loads.values()),
            "calls": calls,
            "peak_mb": (d.snapshot_peak() or 0) / 2**20,
            "winner": lineage["winner"],
            "winner_score": max(n["score"] for n in lineage["nodes"]),
            "candidates": len(lineage["nodes"]),
        }


def main() -> int:
    for noisy in ("httpx", "apscheduler", "uvicorn", "loom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    results = [run("phased"), run("sequential")]
    phased, seq = results
    pairwise = run("phased", "pairwise")
    load_cost = sum(LOAD_S.values()) / len(LOAD_S)
    print(
        f"\nBeam search N={PARAMS['beam_width']}, M={PARAMS['keep_top']}, {PARAMS['iterations']} iterations "
        f"on mock models (load {', '.join(f'{m[6:]} {s}s' for m, s in LOAD_S.items())}; "
        f"latency {', '.join(f'{m[6:]} {v} ms' for m, v in LATENCY_MS.items())}; "
        f"{MEMORY_MB} MB each; CPU budget {BUDGET}, one model at a time)\n"
    )
    print(
        "| submission | model loads (llm / image / vision) | total loads | model calls (chat / image / vision) | wall time | job run time |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        loads, c = r["loads"], r["calls"]
        print(
            f"| {r['schedule']} | {loads['bench-llm']} / {loads['bench-image']} / {loads['bench-vision']} "
            f"| {r['total_loads']} "
            f"| {c.get('chat', 0)} / {c.get('image', 0)} / {c.get('vision', 0)} | {r['wall']:.1f} s | {r['run']:.1f} s |"
        )
    print(
        f"\nphase by phase: {seq['total_loads'] / max(1, phased['total_loads']):.1f}x fewer loads, "
        f"{seq['wall'] / phased['wall']:.1f}x faster (mean load {load_cost:.2f} s). "
        f"Same search: {phased['candidates']} candidates each, winners {phased['winner']} ({phased['winner_score']:.2f}) "
        f"and {seq['winner']} ({seq['winner_score']:.2f})."
    )
    peak = phased["peak_mb"]
    if peak:
        print(f"Peak memory held on the CPU device: {peak:.0f} MB (budget {BUDGET}).")
    n, m, k = PARAMS["beam_width"], PARAMS["keep_top"], PARAMS["iterations"]
    pools = [n] + [m + m * (n // m)] * (k - 1)
    all_pairs = [p * (p - 1) // 2 for p in pools]
    print("\nRanking, both phased (judge: a mock vision chat model, load 0.5 s, 40 ms a call):\n")
    print("| ranking | comparisons per iteration | bound (documented) | seed's all-pairs | model loads | wall time |")
    print("|---|---|---|---|---|---|")
    for r in (phased, pairwise):
        got = ", ".join(map(str, r["comparisons"]))
        bound = ", ".join(map(str, r["bounds"])) if r["bounds"] else "-"
        pairs = ", ".join(map(str, all_pairs)) if r["bounds"] else "-"
        print(f"| {r['ranking']} | {got} | {bound} | {pairs} | {r['total_loads']} | {r['wall']:.1f} s |")
    print(
        f"\npairwise: {sum(pairwise['comparisons'])} comparisons in all "
        f"({sum(pairwise['comparisons']) / sum(all_pairs):.2f} of the seed's all-pairs {sum(all_pairs)}), "
        f"makespan {pairwise['wall'] / phased['wall']:.2f}x the score ranking's."
    )
    print(f"\nCommand: {COMMAND}")
    same = phased["winner"] == seq["winner"]
    if not same:
        print("warning: the two schedules found different winners", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
