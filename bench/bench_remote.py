"""Added latency of Loom in front of an upstream Loom (the mock, zero latency).

Two daemons: the upstream serves ``mock-chat``; the front serves ``remote-chat`` through the openai
plugin pointed at the upstream. The same chat request goes to each, in alternating rounds in one
run (so drift hits both alike), at 1 and at 32 concurrent keep-alive clients. The client is a raw
asyncio HTTP/1.1 loop, so its own cost stays small next to what it measures.

    .venv/bin/python bench/bench_remote.py [--rounds 6] [--requests 800]

On a small machine all three processes share the cores: at 32 clients the front's CPU time is
taken from the upstream, so that row measures the cost of the extra hop under saturation, and the
1-client row the added latency of one request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import loom_server, percentile

UPSTREAM = """
[daemon]
host = "127.0.0.1"
log_level = "warning"

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]
"""

FRONT = """
[daemon]
host = "127.0.0.1"
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


def request_bytes(port: int, model: str) -> bytes:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "seed": 1}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one_connection(port: int, payload: bytes, count: int, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(payload)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if b" 200 " not in status:
                raise RuntimeError(f"bad answer: {status!r}")
            out.append(time.perf_counter() - start)
    finally:
        writer.close()


async def load(port: int, model: str, clients: int, total: int) -> tuple[list[float], float]:
    payload = request_bytes(port, model)
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(one_connection(port, payload, total // clients, latencies) for _ in range(clients)))
    return latencies, len(latencies) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=800, help="per round and target at 32 clients")
    args = parser.parse_args()
    began = time.perf_counter()
    with loom_server(UPSTREAM) as up, loom_server(FRONT.format(url=up.url)) as front:
        targets = {"direct": (up.port, "mock-chat"), "via front": (front.port, "remote-chat")}
        for port, model in targets.values():  # warm up: connections, imports, first loads
            asyncio.run(load(port, model, 8, 400))
        results = {(t, c): ([], []) for t in targets for c in (1, 32)}
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for clients, total in ((1, max(100, args.requests // 4)), (32, args.requests)):
                for name in order:
                    lat, rps = asyncio.run(load(*targets[name], clients, total))
                    results[(name, clients)][0].extend(lat)
                    results[(name, clients)][1].append(rps)
    for server in (up, front):  # the temporary config and data folders
        shutil.rmtree(Path(server.cmd[server.cmd.index("--config") + 1]).parent, ignore_errors=True)

    cpu = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    print(f"\nLoom in front of Loom (mock upstream, zero latency): {cpu}, Python {platform.python_version()}")
    print(f"command: .venv/bin/python bench/bench_remote.py --rounds {args.rounds} --requests {args.requests}\n")
    print("| clients | path      | requests | p50 ms | p99 ms | req/s  |")
    print("|--------:|-----------|---------:|-------:|-------:|-------:|")
    summary = {}
    for clients in (1, 32):
        for name in targets:
            lat, rps = results[(name, clients)]
            p50, p99 = percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000
            summary[(name, clients)] = (p50, p99)
            print(
                f"| {clients:>7} | {name:<9} | {len(lat):>8} | {p50:>6.2f} | {p99:>6.2f} | {sum(rps) / len(rps):>6.0f} |"
            )
    print()
    for clients in (1, 32):
        (d50, d99), (f50, f99) = summary[("direct", clients)], summary[("via front", clients)]
        print(f"added by the front at {clients:>2} client(s): p50 {f50 - d50:+.2f} ms, p99 {f99 - d99:+.2f} ms")
    print(f"\n(took {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
