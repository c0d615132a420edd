"""`loom tui` in a real terminal (tmux, 80x24): time to first paint, time until the dashboard shows
the daemon's devices, and the TUI's CPU use while nobody touches it, against an idle daemon and
against a busy one (a stream of mock beam-search jobs and chat requests).

Run: .venv/bin/python bench/bench_tui.py        (needs tmux)
Targets: first paint under 1 s; untouched, under 2% of a core with the daemon idle and under 15%
with it busy (screens redraw at most once a second, the log in batches).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import httpx
from _harness import loom_server

CONFIG = """
[daemon]
host = "127.0.0.1"

[scheduler.devices.cpu]
budget = "300MiB"

[routes]
chat = "bs-llm"
image = "bs-image"
vision = "bs-vision"

[[models]]
id = "bs-llm"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 20, token_latency_ms = 2 }

[[models]]
id = "bs-image"
provider = "mock"
capabilities = ["image"]
options = { memory_mb = 20, latency_ms = 50 }

[[models]]
id = "bs-vision"
provider = "mock"
capabilities = ["vision"]
options = { memory_mb = 20 }
"""

TMUX = shutil.which("tmux")
RUNS = 3
WINDOW_S = 10.0
JOB = {"prompt": "a red apple", "width": 64, "height": 64, "beam_width": 3, "keep_top": 2, "iterations": 2}


class Load:
    """Keeps the daemon busy: two beam-search jobs back to back, and a chat request every 50 ms."""

    def __init__(self, url: str) -> None:
        self.url, self.stop, self.jobs, self.chats = url, threading.Event(), 0, 0
        self.threads = [threading.Thread(target=self._jobs, daemon=True) for _ in range(2)]
        self.threads.append(threading.Thread(target=self._chat, daemon=True))

    def _jobs(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.stop.is_set():
                job = c.post("/v1/pipelines/beam_search", json=JOB).json()
                while c.get(f"/v1/jobs/{job['id']}").json()["state"] in ("queued", "running"):
                    time.sleep(0.05)
                self.jobs += 1

    def _chat(self) -> None:
        body = {"model": "bs-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.stop.is_set():
                c.post("/v1/chat/completions", json=body)
                self.chats += 1
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def tmux(*args: str) -> str:
    return subprocess.run([TMUX, *args], capture_output=True, text=True, check=True).stdout


class Tui:
    """`loom tui` in a detached tmux session."""

    def __init__(self, url: str) -> None:
        self.url, self.session = url, f"loom-bench-{os.getpid()}-{time.monotonic_ns()}"

    def __enter__(self) -> Tui:
        cmd = f"exec {sys.executable} -m loom.daemon.cli tui --url {self.url}"
        self.t0 = time.perf_counter()
        tmux("new-session", "-d", "-s", self.session, "-x", "80", "-y", "24", cmd)
        self.pid = int(tmux("display-message", "-p", "-t", self.session, "#{pane_pid}").strip())
        return self

    def wait_for(self, text: str, timeout: float = 120) -> float:
        while time.perf_counter() - self.t0 < timeout:
            if text in tmux("capture-pane", "-p", "-t", self.session):
                return time.perf_counter() - self.t0
            time.sleep(0.005)
        raise RuntimeError(f"{text!r} never appeared")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def idle_cpu(self, seconds: float) -> float:
        """Share of one core the TUI used over ``seconds`` of nobody touching it."""
        c0, t0 = self.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        return (self.cpu_seconds() - c0) / (time.perf_counter() - t0)

    def __exit__(self, *exc) -> None:
        subprocess.run([TMUX, "kill-session", "-t", self.session], capture_output=True)


def work_items(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("loom_work_items_total"))


def main() -> None:
    if TMUX is None:
        sys.exit("bench_tui needs tmux (apt-get install tmux)")
    paint, ready = [], []
    rows = []
    with loom_server(CONFIG) as server:
        url = server.url
        for _ in range(RUNS):
            with Tui(url) as tui:
                paint.append(tui.wait_for(" Loom "))
                ready.append(tui.wait_for("● http"))
                tui.wait_for("cpu ")
        with Tui(url) as tui:
            tui.wait_for("cpu ")
            time.sleep(1)
            rows.append(("dashboard, daemon idle", tui.idle_cpu(WINDOW_S), 0.0))
        for screen, key in (("dashboard", None), ("log", "4")):
            with Tui(url) as tui, Load(url):
                tui.wait_for("cpu ")
                if key:
                    tmux("send-keys", "-t", tui.session, key)
                time.sleep(2)  # let the load settle
                w0, t0 = work_items(url), time.perf_counter()
                cpu = tui.idle_cpu(WINDOW_S)
                rate = (work_items(url) - w0) / (time.perf_counter() - t0)
                rows.append((f"{screen}, daemon busy", cpu, rate))
    print("| `loom tui` (tmux, 80x24) | median of 3 |")
    print("|---|---|")
    print(f"| first paint | {statistics.median(paint) * 1000:.0f} ms |")
    print(f"| connected, devices shown | {statistics.median(ready) * 1000:.0f} ms |")
    print()
    print(f"| TUI untouched for {WINDOW_S:.0f} s | CPU (share of one core) | daemon work items/s |")
    print("|---|---|---|")
    for name, cpu, rate in rows:
        print(f"| {name} | {cpu * 100:.1f}% | {rate:.0f} |")
    print("\ncommand: .venv/bin/python bench/bench_tui.py")


if __name__ == "__main__":
    main()
