"""Shared bench helpers: start servers on free ports, load them, summarise latencies."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

#: Runs llama-cpp-python's server with use_extra_bufts off where llama.cpp has AMX kernels.
LLAMA_CPP_PYTHON_SERVER = """
import sys, llama_cpp
from llama_cpp import llama_cpp as low
if b"AMX_INT8 = 1" in low.llama_print_system_info():
    make = low.llama_model_default_params
    def without_extra_buffers():
        params = make()
        params.use_extra_bufts = False
        return params
    low.llama_model_default_params = without_extra_buffers
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


def baseline_tree(rev: str) -> str:
    """The baseline's packages under a temporary folder, as a PYTHONPATH (like .shim)."""
    root = Path(tempfile.mkdtemp(prefix="loom-baseline-"))
    src = root / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "daemon", "plugins", "sdk", "tui"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    shim = root / "shim" / "loom"
    shim.mkdir(parents=True)
    for name in ("daemon", "plugins", "sdk", "tui"):
        (shim / name).symlink_to(src / name)
    return str(root / "shim")


def this_tree() -> str:
    """This checkout as a PYTHONPATH: its .shim when there is one (a worktree), else nothing."""
    shim = ROOT / ".shim"
    return str(shim) if shim.exists() else os.environ.get("PYTHONPATH", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(url: str, proc: subprocess.Popen, timeout: float = 60, path: str = "/health") -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=0.5).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            time.sleep(0.005)
    raise RuntimeError("server did not come up")


class Server:
    """A subprocess server; ``cmd`` gets ``{port}`` substituted."""

    def __init__(self, cmd: list[str], env: dict | None = None, health: str = "/health") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [c.format(port=self.port) for c in cmd]
        self.env = {**os.environ, **(env or {})}
        self.health = health
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    def __enter__(self) -> Server:
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.startup_s = wait_health(self.url, self.proc, path=self.health)
        return self

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def loom_server(config_text: str, data_dir: str | None = None) -> Server:
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    cfg = tmp / "loom.toml"
    cfg.write_text(textwrap.dedent(config_text))
    return Server(
        [
            sys.executable,
            "-m",
            "loom.daemon.cli",
            "serve",
            "--config",
            str(cfg),
            "--port",
            "{port}",
            "--data-dir",
            data_dir or str(tmp / "data"),
        ]
    )


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def sequential_latencies(url: str, path: str, body: dict, n: int, warmup: int = 50) -> list[float]:
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(warmup):
            c.post(path, json=body).raise_for_status()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            c.post(path, json=body).raise_for_status()
            out.append(time.perf_counter() - t)
    return out


def concurrent_rps(url: str, path: str, body: dict, clients: int, seconds: float) -> float:
    """Requests/s with ``clients`` concurrent keep-alive connections, in a separate process."""
    script = textwrap.dedent(f"""
        import asyncio, time, httpx
        async def main():
            limits = httpx.Limits(max_connections={clients}, max_keepalive_connections={clients})
            async with httpx.AsyncClient(base_url={url!r}, limits=limits, timeout=30) as c:
                done = 0
                stop = time.perf_counter() + {seconds}
                async def worker():
                    nonlocal done
                    while time.perf_counter() < stop:
                        r = await c.post({path!r}, json={body!r})
                        r.raise_for_status()
                        done += 1
                t = time.perf_counter()
                await asyncio.gather(*[worker() for _ in range({clients})])
                print(done / (time.perf_counter() - t))
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def median(values):
    return statistics.median(values)
