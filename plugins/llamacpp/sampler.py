"""One request's sampler: a llama.cpp sampler chain built from its :class:`~.plan.Sampling`.

The chain is the one llama-cpp-python 0.3.36 builds for ``Llama.create_completion`` (``Llama.
_init_sampler``), in its order: logit bias, penalties over the last 64 sampled tokens, the
grammar, then greedy (temperature 0) or top-k, typical (1.0: a no-op), top-p, min-p,
temperature and a seeded draw. Each sequence of a batch carries its own chain: its seed,
grammar and penalties see only its tokens. With ``options.flash_attn = false`` (llama-cpp-python's
setting) a request alone gives token for token what ``Llama.create_completion`` gives; with flash
attention on (the default) the logits round a little differently, the same batched or alone.

Log probabilities are computed from the raw logits of the sequence's row (before bias, penalties
and grammar), as OpenAI reports them.

Imported from ``load`` on (it imports llama_cpp).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp
import numpy as np
from loom.sdk import InvalidRequest

from .plan import Sampling

#: llama-cpp-python's ``last_n_tokens_size``: the window the penalties look at.
PENALTY_LAST_N = 64
GRAMMAR_ROOT = b"root"


class SamplerChain:
    """A llama_sampler chain owned by one sequence; ``close()`` frees it (once)."""

    def __init__(self, vocab: int, n_vocab: int, sampling: Sampling, grammar: str | None) -> None:
        self.pointer = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        try:
            self._build(vocab, n_vocab, sampling, grammar)
        except BaseException:
            self.close()
            raise

    def _add(self, sampler) -> None:
        if not sampler:
            raise InvalidRequest("llamacpp: a sampler could not be made for these parameters")
        llama_cpp.llama_sampler_chain_add(self.pointer, sampler)

    def _build(self, vocab, n_vocab: int, s: Sampling, grammar: str | None) -> None:
        if s.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(s.logit_bias))()
            for i, (token, bias) in enumerate(s.logit_bias.items()):
                if not 0 <= token < n_vocab:
                    raise InvalidRequest(
                        f"logit_bias names token {token}, outside this model's vocabulary (0..{n_vocab - 1})",
                        param="logit_bias",
                    )
                biases[i] = llama_cpp.llama_logit_bias(token=token, bias=bias)
            self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(s.logit_bias), biases))
        # Called as llama-cpp-python calls it (its binding still declares n_vocab first), so the
        # penalties behave exactly as they did through Llama.create_completion.
        self._add(
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, s.repeat_penalty, s.frequency_penalty, s.presence_penalty
            )
        )
        if grammar is not None:
            g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), GRAMMAR_ROOT)
            if not g:
                # The grammars are Loom's own (.grammars); one that llama.cpp refuses is a bug
                # there, but the client's request is what made it.
                raise InvalidRequest("llamacpp: the output grammar for this request could not be parsed")
            self._add(g)
        if s.temperature < 0.0:
            self._add(llama_cpp.llama_sampler_init_dist(s.seed))
        elif s.temperature == 0.0:
            self._add(llama_cpp.llama_sampler_init_greedy())
        else:
            self._add(llama_cpp.llama_sampler_init_top_k(s.top_k))
            self._add(llama_cpp.llama_sampler_init_typical(1.0, 1))
            self._add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            self._add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            self._add(llama_cpp.llama_sampler_init_temp(s.temperature))
            self._add(llama_cpp.llama_sampler_init_dist(s.seed))

    def sample(self, ctx, row: int) -> int:
        """Sample from the logits of batch row ``row`` and accept the token into the chain."""
        return llama_cpp.llama_sampler_sample(self.pointer, ctx, row)

    def close(self) -> None:
        pointer, self.pointer = self.pointer, None
        if pointer:
            llama_cpp.llama_sampler_free(pointer)


def _row(ctx, row: int, n_vocab: int) -> np.ndarray:
    """Batch row ``row``'s logits, as an array over llama.cpp's buffer (writable)."""
    pointer = llama_cpp.llama_get_logits_ith(ctx, row)
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))


@contextmanager
def suppressed(ctx, row: int, n_vocab: int, tokens: list[int]) -> Iterator[None]:
    """Inside: ``tokens`` cannot be sampled from row ``row`` (their logits are -inf); after, the
    row is as it was, so log probabilities are still reported from the raw logits. How
    ``min_tokens`` and ``ignore_eos`` hold off the end (vLLM masks the end tokens the same way)."""
    logits = _row(ctx, row, n_vocab)
    ids = np.asarray(tokens, dtype=np.intp)
    kept = logits[ids].copy()
    logits[ids] = -np.inf
    try:
        yield
    finally:
        logits[ids] = kept


def row_logprobs(ctx, row: int, n_vocab: int, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """(log probability of ``token``, the ``top`` most likely (token, log probability)) from the
    raw logits of batch row ``row``; read before the next decode overwrites them."""
    logits = _row(ctx, row, n_vocab)
    shifted = logits.astype(np.float64) - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    best: list[tuple[int, float]] = []
    if top:
        ids = np.argpartition(-logprobs, top)[:top]
        best = [(int(i), float(logprobs[i])) for i in ids[np.argsort(-logprobs[ids])]]
    return float(logprobs[token]), best
