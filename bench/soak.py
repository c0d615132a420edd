"""Soak: ten minutes (``--minutes``) of mixed work against one `loom serve`, looking for leaks.

The daemon runs the shipped config (SmolLM2 for chat, the mock models for images, vision and
translation) plus a mock chat model, so pipelines run fast. Four clients at once, until time is
up: chats (SmolLM2 and the mock, plain and streamed, some streams dropped halfway), images
(base64 and served files), pipeline jobs (haiku, beam search), a share of which are cancelled
while running, and scheduler cancellations of slow chats by work id. 429s are the queues
pushing back (counted under ``errors`` with their status, like anything not 2xx). After a warm-up round the
daemon's RSS and open file descriptors are read; at the end they are read again once the work
has drained. Every job started must end in a final state: none lost, none stuck.

Passes (exit 0) when RSS and open files grew by less than 10% and no job was lost or stuck.
Run it alone on the machine; it is not part of ``make bench`` (it takes ten minutes).

    python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from _harness import ROOT, Server, loom_server, wait_health

CONFIG = (
    (ROOT / "plugins.toml").read_text()
    + """
[[models]]
id = "soak-chat"
provider = "mock"
capabilities = ["chat", "completion", "embedding"]
options = { token_latency_ms = 5 }

[[models]]
id = "soak-slow"
provider = "mock"
capabilities = ["chat"]
options = { latency_ms = 3000 }
"""
)
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}
HELLO = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]


def start_logged(server: Server, log: Path) -> Server:
    """Start ``server`` with its output in ``log`` (the harness pipes stderr, and a pipe nobody
    reads would fill and stall the daemon during a long run); stop it with ``__exit__``."""
    server.proc = subprocess.Popen(server.cmd, env=server.env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    server.startup_s = wait_health(server.url, server.proc, path=server.health)
    return server


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.jobs: list[str] = []
        self.lock = threading.Lock()

    def note(self, kind: str, response: httpx.Response | None = None, ok: tuple[int, ...] = (200,)) -> None:
        with self.lock:
            self.counts[kind] += 1
            if response is not None and response.status_code not in ok:
                self.errors[f"{kind} {response.status_code}"] += 1

    # --- the kinds of work ------------------------------------------------------------------

    def chat(self, c: httpx.Client, rng: random.Random) -> None:
        model = "smollm2-135m" if rng.random() < 0.3 else "soak-chat"
        body = {"model": model, "messages": HELLO, "max_tokens": 24, "seed": rng.randrange(1000)}
        if rng.random() < 0.5:
            self.note("chat", c.post("/v1/chat/completions", json=body))
            return
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            drop = rng.random() < 0.3  # the client goes away halfway
            for n, _ in enumerate(r.iter_lines()):
                if drop and n > 3:
                    break
        self.note("chat-stream-dropped" if drop else "chat-stream", r)

    def image(self, c: httpx.Client, rng: random.Random) -> None:
        fmt = rng.choice(["b64_json", "url"])
        body = {"model": "mock-image", "prompt": "a lighthouse", "size": "128x128", "response_format": fmt}
        r = c.post("/v1/images/generations", json=body)
        self.note("image", r)
        if fmt == "url" and r.status_code == 200:
            self.note("file", c.get(r.json()["data"][0]["url"]))

    def pipeline(self, c: httpx.Client, rng: random.Random) -> None:
        if rng.random() < 0.5:
            name, params = "haiku", {"topic": "the sea", "chat_model": "soak-chat", "image_model": "mock-image"}
        else:
            params = {"prompt": "a red apple", "width": 64, "height": 64, "iterations": 1, "llm_model": "soak-chat"}
            name = "beam_search"
        r = c.post(f"/v1/pipelines/{name}", json=params)
        self.note(f"job-{name}", r, ok=(202,))
        if r.status_code != 202:
            return
        job = r.json()["id"]
        with self.lock:
            self.jobs.append(job)
        if rng.random() < 0.3:
            time.sleep(rng.random() * 0.5)
            self.note("job-cancel", c.post(f"/v1/jobs/{job}/cancel"), ok=(200, 409))

    def cancel_work(self, c: httpx.Client, rng: random.Random) -> None:
        """A slow chat cancelled by its scheduler work id (a model of its own, so no other
        client's call is the one cancelled)."""
        out: list[httpx.Response] = []
        body = {"model": "soak-slow", "messages": HELLO, "max_tokens": 200}
        t = threading.Thread(target=lambda: out.append(c.post("/v1/chat/completions", json=body)))
        t.start()
        for _ in range(100):
            running = [
                i["id"]
                for d in c.get("/admin/scheduler").json()["devices"]
                for i in d["running"]
                if i["model"] == "soak-slow"
            ]
            if running:
                c.post(f"/admin/work/{running[0]}/cancel")
                break
            time.sleep(0.02)
        t.join(120)
        self.note("work-cancel", out[0] if out else None, ok=(200, 499))

    def client(self, deadline: float, seed: int) -> None:
        rng = random.Random(seed)
        kinds = [self.chat, self.chat, self.image, self.pipeline, self.cancel_work]
        with httpx.Client(base_url=self.url, timeout=120) as c:
            while time.monotonic() < deadline:
                try:
                    rng.choice(kinds)(c, rng)
                except httpx.HTTPError as e:
                    with self.lock:
                        self.errors[type(e).__name__] += 1

    def run(self, seconds: float, clients: int = 4) -> None:
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=self.client, args=(deadline, i)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def settle(self, timeout: float = 120) -> tuple[int, int]:
        """Wait for every job to end; (lost, stuck)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=30) as c:
            pending = set(self.jobs)
            lost = 0
            while pending and time.monotonic() < deadline:
                for job in list(pending):
                    r = c.get(f"/v1/jobs/{job}")
                    if r.status_code == 404:
                        lost += 1
                        pending.discard(job)
                    elif r.json()["state"] in FINAL:
                        pending.discard(job)
                time.sleep(0.5)
        return lost, len(pending)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    server = loom_server(CONFIG)
    log = Path(server.cmd[server.cmd.index("--config") + 1]).with_name("loom.log")
    start_logged(server, log)
    try:
        pid = server.proc.pid
        soak = Soak(server.url)
        soak.run(min(30.0, args.minutes * 60 / 10), args.clients)  # warm-up: models loaded, caches full
        soak.settle()
        start = {"rss_mb": rss_mb(pid), "open_files": open_files(pid)}
        soak.counts.clear()
        began = time.monotonic()
        soak.run(args.minutes * 60, args.clients)
        lost, stuck = soak.settle()
        time.sleep(2)
        end = {"rss_mb": rss_mb(pid), "open_files": open_files(pid)}
        seconds = time.monotonic() - began
    finally:
        server.__exit__(None, None, None)
    print(f"daemon log: {log}")

    growth = {k: (end[k] - start[k]) / start[k] for k in start}
    report = {
        "minutes": round(seconds / 60, 2),
        "requests": dict(soak.counts),
        "errors": dict(soak.errors),
        "jobs": len(soak.jobs),
        "lost_jobs": lost,
        "stuck_jobs": stuck,
        "start": start,
        "end": end,
        "growth_pct": {k: round(100 * v, 1) for k, v in growth.items()},
    }
    print(json.dumps(report, indent=2))
    ok = all(v < 0.10 for v in growth.values()) and lost == 0 and stuck == 0
    print("PASS" if ok else "FAIL: growth of 10% or more, or lost or stuck jobs")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
