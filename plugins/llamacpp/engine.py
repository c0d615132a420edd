"""Everything that touches llama_cpp: building Llama objects, grammars, sizes and error mapping.

Imported only from ``LlamaCppProvider.load`` and later, so the daemon starts without llama_cpp.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar

from loom.sdk import InvalidRequest, LoomError, OutOfMemory, ProviderError
from loom.sdk.types import TokenLogprob, TopLogprob

from .plan import Generation

#: KV cache element size: llama.cpp's default cache type is f16.
_KV_ELEMENT_BYTES = 2


@functools.cache
def counting_llama() -> type:
    """A ``Llama`` that records the token counts its streams do not report.

    With ``stream=True`` llama-cpp-python sends no usage. ``generate()`` receives the full prompt
    tokens (before any prefix-cache trimming) and ``sample()`` is called once per generated token,
    so overriding both gives exact counts for chat and completions alike.
    """

    class CountingLlama(llama_cpp.Llama):
        loom_prompt_tokens = 0
        loom_sampled = 0
        loom_last_token = -1
        #: Alternatives to record per token (None: no log probabilities), and the records.
        loom_logprobs: int | None = None
        loom_token_logprobs: list[TokenLogprob] = []

        def generate(self, tokens, *args, **kwargs):
            self.loom_prompt_tokens = len(tokens)
            self.loom_sampled = 0
            self.loom_last_token = -1
            return super().generate(tokens, *args, **kwargs)

        def sample(self, *args, **kwargs):
            # The logits the sampler is about to read: those of the last evaluated token. They
            # are read here rather than with logits_all=True, which would keep a row of logits
            # for every prompt token (n_ctx x n_vocab floats).
            logits = self._last_logits() if self.loom_logprobs is not None else None
            token = super().sample(*args, **kwargs)
            self.loom_sampled += 1
            self.loom_last_token = token
            if logits is not None:
                self.loom_token_logprobs.append(self._logprob(logits, token))
            return token

        def _last_logits(self) -> np.ndarray:
            pointer = llama_cpp.llama_get_logits_ith(self._ctx.ctx, -1)
            size = self.n_vocab()
            return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(size,)).copy()

        def _logprob(self, logits: np.ndarray, token: int) -> TokenLogprob:
            shifted = logits.astype(np.float64) - logits.max()
            logprobs = shifted - np.log(np.exp(shifted).sum())
            top: list[TopLogprob] = []
            n = self.loom_logprobs or 0
            if n:
                best = np.argpartition(-logprobs, n)[:n]
                for i in best[np.argsort(-logprobs[best])]:
                    text, raw = self._token_text(int(i))
                    top.append(TopLogprob(token=text, logprob=float(logprobs[i]), bytes=raw))
            text, raw = self._token_text(token)
            return TokenLogprob(token=text, logprob=float(logprobs[token]), bytes=raw, top_logprobs=top)

        def _token_text(self, token: int) -> tuple[str, list[int]]:
            raw = self.detokenize([token])
            return raw.decode("utf-8", errors="replace"), list(raw)

        def loom_completion_tokens(self) -> int:
            """Tokens generated, not counting the end-of-generation token that stopped it."""
            eog = self.loom_last_token >= 0 and llama_cpp.llama_vocab_is_eog(self._model.vocab, self.loom_last_token)
            return self.loom_sampled - (1 if eog else 0)

    return CountingLlama


def build_llama(
    model_path: str,
    *,
    embedding: bool,
    n_ctx: int,
    n_threads: int | None,
    n_gpu_layers: int,
    main_gpu: int,
    chat_format: str | None,
) -> Any:
    """Load one Llama; a failure becomes OutOfMemory when it looks like memory, else ProviderError."""
    kwargs: dict[str, Any] = dict(
        model_path=model_path,
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_gpu_layers=n_gpu_layers,
        main_gpu=main_gpu,
        chat_format=chat_format,
        verbose=False,
    )
    if n_gpu_layers != 0:
        # The scheduler placed the model on one device; do not let llama.cpp spread it.
        kwargs["split_mode"] = llama_cpp.LLAMA_SPLIT_MODE_NONE
    if embedding:
        # Mean pooling gives one vector per input. A pooled sequence must fit in one micro-batch,
        # so the batch is the whole context (inputs longer than n_ctx are truncated).
        kwargs.update(
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
        )
    try:
        return counting_llama()(**kwargs)
    except MemoryError as e:
        raise OutOfMemory(f"llamacpp: out of memory loading {model_path}: {e}") from e
    except Exception as e:  # llama-cpp-python reports load failures as ValueError/RuntimeError
        message = str(e)
        # The context (KV cache and compute buffers) is what usually fails to allocate; the model
        # itself fails for a bad file as often as for memory, so only memory words count there.
        memory_words = ("memory", "alloc", "oom", "llama_context")
        if any(w in message.lower() for w in memory_words):
            raise OutOfMemory(f"llamacpp: could not allocate {model_path}: {message}") from e
        raise ProviderError(f"llamacpp: could not load {model_path}: {message}") from e


def llama_bytes(llm: Any, *, count_weights: bool = True) -> int:
    """Weights (tensor bytes) plus the f16 KV cache for the whole context.

    llama_state_get_size() only counts the cells in use, so the KV cache is computed from the
    model's shape instead. Compute buffers are not included; the scheduler measures those.
    """
    model = llm.model
    n_layer = llama_cpp.llama_model_n_layer(model)
    n_head = max(1, llama_cpp.llama_model_n_head(model))
    n_head_kv = llama_cpp.llama_model_n_head_kv(model)
    head_dim = llama_cpp.llama_model_n_embd(model) // n_head
    kv = llm.n_ctx() * n_layer * n_head_kv * head_dim * 2 * _KV_ELEMENT_BYTES
    weights = llama_cpp.llama_model_size(model) if count_weights else 0
    return int(weights + kv)


def unit_vectors(vectors: list[list[float]]) -> list[list[float]]:
    """Scale each vector to length 1 (llama_cpp's own normalize=True is not used: a zero vector,
    e.g. from an input with no tokens, would divide by zero there)."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.where(norms == 0.0, 1.0, norms)).tolist()


def stream(llm: Any, gen: Generation) -> Iterator[dict]:
    """Start one generation on ``llm``: llama-cpp-python's completion stream of chunks."""
    llm.loom_logprobs = gen.logprobs
    llm.loom_token_logprobs = []
    if gen.chat:
        # The template wrote the special tokens as text; tokenize them as tokens.
        prompt: Any = llm.tokenize(gen.text.encode("utf-8"), add_bos=gen.add_bos, special=True)
    else:
        # llama-cpp-python cannot start from zero tokens (it asserts); an empty prompt means
        # "generate from the beginning of a text", which is the BOS token.
        prompt = gen.text or [llm.token_bos()]
    stopping = None
    if gen.stop_token_ids:
        ids = set(gen.stop_token_ids)
        stopping = llama_cpp.StoppingCriteriaList([lambda tokens, logits: int(tokens[-1]) in ids])
    s = gen.sampling
    return llm.create_completion(
        prompt,
        stream=True,
        max_tokens=gen.max_tokens,
        stop=gen.stop,
        seed=s.seed,
        grammar=LlamaGrammar.from_string(gen.grammar, verbose=False) if gen.grammar else None,
        stopping_criteria=stopping,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        min_p=s.min_p,
        repeat_penalty=s.repeat_penalty,
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
        logit_bias=s.logit_bias,
    )


def take_logprobs(llm: Any) -> list[TokenLogprob]:
    """The log probabilities recorded since the last call (for the text just produced)."""
    taken, llm.loom_token_logprobs = llm.loom_token_logprobs, []
    return taken


def generation_error(e: Exception, param: str) -> LoomError:
    """A llama_cpp exception raised mid-request, as the Loom error a client should see."""
    message = str(e) or type(e).__name__  # llama-cpp-python also fails with bare asserts
    if "exceed context window" in message:
        # Raised before any token is generated: the prompt alone does not fit in n_ctx.
        return InvalidRequest(f"llamacpp: {message}", param=param, code="context_length_exceeded")
    return ProviderError(f"llamacpp: {message}")
