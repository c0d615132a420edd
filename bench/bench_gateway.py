"""The gateway under a C load generator: Loom's mock chat, a bare Litestar route and LiteLLM's proxy
(``mock_response``) side by side in one run, then Loom in front of an upstream.

    .venv/bin/python bench/bench_gateway.py [--seconds 10] [--rounds 3] [--baseline-rev REV]
    LITELLM_PYTHON=/path/to/litellm-venv/bin/python .venv/bin/python bench/bench_gateway.py

The load generator is ``wrk`` (installed by ``make bench``; this script apt-installs it when it
runs as root and it is missing). Every server is one process on uvicorn with uvloop and httptools,
access logs off, and gets the same request over keep-alive connections: 2 wrk threads and 32
connections for throughput, 1 connection for latency, a warm-up run first, the servers taken in
turn round after round (the median of the rounds is reported). Server CPU time per request comes
from the process (and its children) over the measured run.

LiteLLM's proxy lives in its own virtualenv (its pins would move Loom's packages): make one with
``python -m venv /path && /path/bin/pip install 'litellm[proxy]' 'uvicorn[standard]'`` and point
``LITELLM_PYTHON`` at its python. Without it the LiteLLM rows are left out and the ratio to it is
not reported.

Loom in front of an upstream: the bare route stands in for a remote OpenAI-compatible service and
Loom's ``openai`` provider proxies to it; "added" is the p50 through Loom less the p50 of calling
the upstream directly, both with wrk at one connection, alternated. The last table is the remote
provider's client alone: CPU per call of ``AsyncOpenAI`` on its default httpx transport and on the
aiohttp transport Loom uses, against the same upstream.

With ``--baseline-rev REV`` a daemon of this repository as of REV (``git archive``) serves the mock
chat beside this tree's, in the same rounds: before and after, under the same load.

Targets (issue 16): mock chat at 32 connections >= 0.35x the bare route and >= 10x LiteLLM;
sequential p50 < 1 ms; Loom in front of an upstream adds < 1 ms p50 at one client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ROOT, Server, baseline_tree, loom_server

LOOM = """
[daemon]
log_level = "warning"

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]
"""

FRONT = """
[daemon]
log_level = "warning"

[plugins.openai.instances.up]
base_url = "{url}/v1"
timeout = 30
model_map = {{ remote-chat = "mock-chat" }}

[[models]]
id = "remote-chat"
provider = "openai"
capabilities = ["chat"]
"""

LITELLM = """
model_list:
  - model_name: mock-chat
    litellm_params:
      model: openai/mock-chat
      api_key: sk-unused
      mock_response: "Mock reply to 'hi': Memory old under without"
litellm_settings:
  telemetry: false
general_settings:
  dangerously_permit_weak_or_unset_master_key: true
"""

#: uvicorn's loggers at warning, as Loom and the bare route run (no access log).
QUIET_LOGS = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"level": "WARNING", "handlers": ["err"]},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING", "handlers": ["err"], "propagate": False},
    },
}

PATH = "/v1/chat/completions"


def body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet).returncode:
            subprocess.run(["apt-get", "update", "-q"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet)
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench_gateway: wrk is not installed (apt-get install wrk, or `make bench` as root)")
    return found


class Load:
    """wrk runs against one server, with its Lua request script."""

    def __init__(self, wrk: str, tmp: Path) -> None:
        self.wrk, self.tmp = wrk, tmp

    def script(self, model: str) -> Path:
        path = self.tmp / f"{model}.lua"
        if not path.exists():
            payload = json.dumps(body(model)).replace("'", "\\'")
            path.write_text(
                f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = \'{payload}\'\n'
            )
        return path

    def run(self, server: Server, model: str, connections: int, seconds: float) -> dict:
        threads = 2 if connections > 1 else 1
        cmd = [self.wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
        cmd += ["-s", str(self.script(model)), server.url + PATH]
        proc = psutil.Process(server.proc.pid)
        before = _cpu(proc)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        cpu = _cpu(proc) - before
        result = _parse(out)
        result["cpu_us"] = cpu / result["requests"] * 1e6 if result["requests"] else float("nan")
        return result


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _parse(out: str) -> dict:
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or (errors and re.search(r"read [1-9]|write [1-9]|timeout [1-9]", errors.group(1))):
        raise RuntimeError(f"wrk saw failures:\n{out}")
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        latency[int(pct)] = float(value) * _UNITS[unit]
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": latency[50],
        "p99": latency[99],
    }


def litellm_server(python: str, tmp: Path) -> Server:
    config, logs = tmp / "litellm.yaml", tmp / "litellm-logs.json"
    config.write_text(LITELLM)
    logs.write_text(json.dumps(QUIET_LOGS))
    cmd = [python, "-m", "litellm.proxy.proxy_cli", "--config", str(config), "--port", "{port}"]
    cmd += ["--host", "127.0.0.1", "--num_workers", "1", "--log_config", str(logs)]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "PYTHONPATH": ""}
    return Server(cmd, env=env, health="/health/liveliness")


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def gateway(load: Load, servers: dict[str, tuple[Server, str]], rounds: int, seconds: float) -> dict:
    results: dict[str, dict[str, list[dict]]] = {name: {"32": [], "1": []} for name in servers}
    for server, model in servers.values():  # warm-up: connections, imports, the first load
        load.run(server, model, 32, 2)
        load.run(server, model, 1, 1)
    for r in range(rounds):
        names = list(servers)
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            server, model = servers[name]
            results[name]["32"].append(load.run(server, model, 32, seconds))
            results[name]["1"].append(load.run(server, model, 1, seconds / 2))
    return results


def remote(load: Load, upstream: Server, front: Server, rounds: int, seconds: float) -> dict:
    targets = {"upstream directly": (upstream, "mock-chat"), "through Loom": (front, "remote-chat")}
    for server, model in targets.values():
        load.run(server, model, 8, 2)
    out: dict[str, dict[str, list[dict]]] = {name: {"1": [], "32": []} for name in targets}
    for r in range(rounds):
        for name in list(targets)[:: 1 if r % 2 == 0 else -1]:
            server, model = targets[name]
            out[name]["1"].append(load.run(server, model, 1, seconds / 2))
            out[name]["32"].append(load.run(server, model, 32, seconds / 2))
    return out


def client_cpu(url: str, calls: int, rounds: int) -> dict[str, float]:
    """CPU per call (this process's thread) of AsyncOpenAI's post on each transport."""

    async def run() -> dict[str, list[float]]:
        import httpx2
        import openai

        clients = {
            "AsyncOpenAI, default httpx transport": openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused"),
            "AsyncOpenAI, aiohttp transport (Loom's)": openai.AsyncOpenAI(
                base_url=url + "/v1", api_key="unused", http_client=openai.DefaultAioHttpClient()
            ),
        }
        request = body("mock-chat")
        per: dict[str, list[float]] = {name: [] for name in clients}
        for r in range(rounds + 1):
            for name, client in clients.items():
                t = time.thread_time()
                for _ in range(calls):
                    answer = await client.post("/chat/completions", cast_to=httpx2.Response, body=request)
                    _ = answer.content  # the body read, as Loom reads it
                if r:  # the first round warms up
                    per[name].append((time.thread_time() - t) / calls * 1e6)
        for client in clients.values():
            await client.close()
        return per

    return {name: statistics.median(v) for name, v in asyncio.run(run()).items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10, help="per measured run at 32 connections")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline-rev", help="also Loom's mock chat as of this git revision (git archive), side by side"
    )
    args = parser.parse_args()
    load = Load(ensure_wrk(), Path(tempfile.mkdtemp(prefix="loom-bench-gw-")))
    litellm_python = os.environ.get("LITELLM_PYTHON")
    began, load_before = time.perf_counter(), os.getloadavg()

    bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_litestar.py"), "{port}"]
    with loom_server(LOOM) as loom, Server(bare_cmd) as bare:
        servers = {"Loom, mock chat": (loom, "mock-chat"), "bare Litestar route": (bare, "mock-chat")}
        if args.baseline_rev:
            before = loom_server(LOOM)
            before.env["PYTHONPATH"] = baseline_tree(args.baseline_rev)
            servers[f"Loom at {args.baseline_rev}, mock chat"] = (before.__enter__(), "mock-chat")
        if litellm_python:
            lite = litellm_server(litellm_python, load.tmp).__enter__()
            servers["LiteLLM proxy, mock_response"] = (lite, "mock-chat")
        try:
            results = gateway(load, servers, args.rounds, args.seconds)
        finally:
            if litellm_python:
                lite.__exit__(None, None, None)
            if args.baseline_rev:
                before.__exit__(None, None, None)
        with loom_server(FRONT.format(url=bare.url)) as front:
            proxied = remote(load, bare, front, args.rounds, args.seconds)
        clients = client_cpu(bare.url, 1000, args.rounds)

    cpu = psutil.cpu_count(logical=True)
    model = platform.processor() or platform.machine()
    print(f"\nGateway, wrk ({cpu} CPUs, {model}, Python {platform.python_version()})")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (a shared machine moves these)")
    rev = f" --baseline-rev {args.baseline_rev}" if args.baseline_rev else ""
    print(f"command: .venv/bin/python bench/bench_gateway.py --seconds {args.seconds:g} --rounds {args.rounds}{rev}\n")
    print(
        "| server | req/s, 32 connections | p50 at 32 | server CPU per request | p50, 1 connection | p99, 1 connection |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for name, r in results.items():
        print(
            f"| {name} | {median(r['32'], 'rps'):,.0f} | {ms(median(r['32'], 'p50'))} | "
            f"{median(r['32'], 'cpu_us'):,.0f} µs | {ms(median(r['1'], 'p50'))} | {ms(median(r['1'], 'p99'))} |"
        )
    loom_rps = median(results["Loom, mock chat"]["32"], "rps")
    bare_rps = median(results["bare Litestar route"]["32"], "rps")
    print(f"\nLoom / bare Litestar, req/s at 32: {loom_rps / bare_rps:.2f}x")
    for name, r in results.items():
        if name.startswith("Loom at "):
            print(
                f"{name.removesuffix(', mock chat')} / bare Litestar, req/s at 32: {median(r['32'], 'rps') / bare_rps:.2f}x"
            )
    per_round = [
        a["rps"] / b["rps"] for a, b in zip(results["Loom, mock chat"]["32"], results["bare Litestar route"]["32"])
    ]
    print(f"  (per round {min(per_round):.2f}-{max(per_round):.2f}x)")
    if litellm_python:
        lite_rps = median(results["LiteLLM proxy, mock_response"]["32"], "rps")
        print(f"Loom / LiteLLM proxy, req/s at 32: {loom_rps / lite_rps:.1f}x")
    print(f"Loom sequential p50: {ms(median(results['Loom, mock chat']['1'], 'p50'))}")

    print("\nLoom in front of an upstream (the bare route as a fake OpenAI service)\n")
    print("| path | p50, 1 connection | p99, 1 connection | req/s, 32 connections |")
    print("|---|--:|--:|--:|")
    for name, r in proxied.items():
        print(f"| {name} | {ms(median(r['1'], 'p50'))} | {ms(median(r['1'], 'p99'))} | {median(r['32'], 'rps'):,.0f} |")
    added = median(proxied["through Loom"]["1"], "p50") - median(proxied["upstream directly"]["1"], "p50")
    print(f"\nadded by Loom at one connection: p50 {added * 1000:+.2f} ms")

    print("\nThe remote provider's client alone, CPU per call against the same upstream\n")
    print("| client | CPU per call |")
    print("|---|--:|")
    for name, us in clients.items():
        print(f"| {name} | {us:,.0f} µs |")
    print(f"\n(took {time.perf_counter() - began:.0f} s)")
    shutil.rmtree(load.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
