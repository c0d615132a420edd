"""Loom's own overhead on the mock with zero latency, side by side with a bare Litestar route.

Run: .venv/bin/python bench/bench_overhead.py
Targets: p50 < 2 ms and p99 < 5 ms sequential; >= 0.5x the bare route's requests/s at 32 clients.
"""

from __future__ import annotations

import sys

from _harness import ROOT, Server, concurrent_rps, loom_server, ms, percentile, sequential_latencies

CONFIG = """
[daemon]
log_level = "warning"
[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]
"""
BODY = {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
PATH = "/v1/chat/completions"


def measure(server: Server) -> dict:
    lat = sequential_latencies(server.url, PATH, BODY, n=2000)
    rps = concurrent_rps(server.url, PATH, BODY, clients=32, seconds=8)
    return {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "rps": rps}


def main() -> None:
    with loom_server(CONFIG) as loom:
        loom_r = measure(loom)
    bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_litestar.py"), "{port}"]
    with Server(bare_cmd) as bare:
        bare_r = measure(bare)
    print("| server | p50 | p99 | req/s (32 clients) |")
    print("|---|---|---|---|")
    for name, r in (("loom, mock chat", loom_r), ("bare Litestar, fixed body", bare_r)):
        print(f"| {name} | {ms(r['p50'])} | {ms(r['p99'])} | {r['rps']:.0f} |")
    print(f"\nratio loom/bare req/s: {loom_r['rps'] / bare_r['rps']:.2f} (target >= 0.5)")
    print("command: .venv/bin/python bench/bench_overhead.py")


if __name__ == "__main__":
    main()
