"""LlamaCppProvider: chat, completions and embeddings from a GGUF model via llama-cpp-python.

llama_cpp is imported in :meth:`LlamaCppProvider.load` (through ``.engine``), never at import time.
"""

from __future__ import annotations

import gc
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from loom.sdk import (
    Capability,
    CapabilityNotSupported,
    ConfigError,
    Embeddings,
    InvalidRequest,
    ModelSpec,
    Provider,
    ProviderError,
    RunContext,
    TextChunk,
)
from loom.sdk.toolcalls import parse_stream
from loom.sdk.types import ChatCompletionRequest, CompletionRequest, TokenLogprob, TopLogprob

from .cpu import repack_enabled
from .options import Options, resolve_gguf

#: Inputs per llama_cpp embed() call; cancellation is checked between groups.
EMBED_GROUP = 64
#: Before load the GGUF is not parsed: weights ~ file size + 10%, and the KV cache per token of
#: context is guessed from the file size (a 4 GB 7B model ~ 128 KiB/token), at least 16 KiB.
_WEIGHTS_OVERHEAD = 1.1
_KV_PER_TOKEN_DIVISOR = 32768
_KV_PER_TOKEN_MIN = 16 * 1024


class LlamaCppProvider(Provider):
    """A GGUF model served by llama.cpp on CPU or (with a CUDA build) one GPU."""

    name = "llamacpp"
    capabilities = frozenset({Capability.CHAT, Capability.COMPLETION, Capability.EMBEDDING})
    Options = Options
    local = True
    #: Same request + seed => same text when run alone: the seed goes to the request's own sampler
    #: chain (see ``_stream`` for the prompt cache on a GPU). Run alongside others, a sequence's
    #: logits come from a larger batch; the README says how often that changes a token.
    deterministic = True
    parameters = frozenset(
        {
            "response_format",
            "presence_penalty",
            "frequency_penalty",
            "tools",
            "logprobs",
            "logit_bias",
            "top_k",
            "min_p",
            "repeat_penalty",
            "min_tokens",
            "ignore_eos",
        }
    )

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        if not isinstance(spec.options, Options):
            try:
                self.options = msgspec.convert(spec.options or {}, Options)
            except msgspec.ValidationError as e:
                raise ConfigError(f"model {spec.id!r}: {e}") from None
        # Generation needs no lock (the batch loop owns the context); this one guards the
        # embedding Llama, which serves one call at a time, and unload.
        self._lock = threading.Lock()
        self._engine: Any = None  # the .engine module, imported by load()
        self._plan: Any = None  # the .plan module (prompts and grammars), imported by load()
        self._template: Any = None  # the model's ChatTemplate, made by load()
        self._runtime: Any = None  # engine.Runtime: the model, its batched context and loop
        self._embedder: Any = None  # a Llama with embedding=True, made on first embed()
        self._threads: Any = None
        self._path = ""
        self._n_gpu_layers = 0
        self._main_gpu = 0

    def concurrency(self) -> int:
        """Requests decode together in ``parallel`` slots: that many calls run at once."""
        return self.options.parallel

    def preemption(self) -> int:
        """With ``options.preempt`` (and the RAM cache that holds paused states), each slot may be
        taken by a call of a higher priority than its own: up to ``parallel`` more calls."""
        o = self.options
        return o.parallel if o.preempt and o.cache_ram_mib > 0 else 0

    # --- memory ---------------------------------------------------------------------------------

    # The host-RAM prompt cache may fill up to its budget at any time after the load, so the whole
    # budget is part of what the model holds: the scheduler's ledger charges it from admission on,
    # and the cache never holds more (it drops its least recently used states first). A model on a
    # GPU is charged to the GPU's ledger, which the cache (in host RAM) does not use: there it is
    # left out (and no ledger counts it).

    def cache_bytes(self) -> int:
        """The host-RAM prompt cache's budget (options.cache_ram_mib) as the model's ledger counts
        it: 0 for a model placed on a GPU."""
        on_gpu = self._n_gpu_layers != 0 if self._runtime is not None else self.spec.device.startswith("cuda")
        return 0 if on_gpu else self.options.cache_ram_mib * 2**20

    def estimate_bytes(self) -> int:
        size = resolve_gguf(self.options).stat().st_size
        per_token = max(_KV_PER_TOKEN_MIN, size // _KV_PER_TOKEN_DIVISOR)
        kv = self.options.n_ctx * self.options.parallel * per_token
        return int(size * _WEIGHTS_OVERHEAD) + kv + self.cache_bytes()

    def memory_bytes(self) -> int:
        runtime, embedder = self._runtime, self._embedder
        if runtime is None:
            return self.estimate_bytes()
        total = runtime.bytes() + self.cache_bytes()
        if embedder is not None:
            # On CPU both mmap the same file, so the weights' pages are shared; on a GPU each
            # holds its own copy of the offloaded layers.
            total += self._engine.embedder_bytes(embedder, count_weights=self._n_gpu_layers != 0)
        return total

    # --- lifecycle ------------------------------------------------------------------------------

    def load(self, device: str) -> None:
        from loom.sdk.threads import runtime_threads

        from . import engine, plan  # llama_cpp comes in here, and only here
        from .chat_prompt import ChatTemplate

        self._engine, self._plan = engine, plan
        self._path = str(resolve_gguf(self.options))
        self._n_gpu_layers, self._main_gpu = _offload(device, self.options.n_gpu_layers)
        o = self.options
        decode = runtime_threads(o.n_threads or self.spec.threads)
        self._threads = engine.Threads(decode=decode, batch=runtime_threads(o.n_threads_batch or decode))
        # Generation gets a context without embeddings; embed() makes an embedding Llama on
        # first use. One context can do both (llama-cpp-python 0.3.36 gave the same text), but
        # llama.cpp then outputs every prompt token: prompt evaluation ran ~1.9x slower and used
        # ~170 MB more at n_ctx 2048 for the 135M model, with a warning on every decode.
        self._runtime = engine.load(
            self._path,
            n_ctx=o.n_ctx,
            parallel=o.parallel,
            n_batch=o.n_batch,
            threads=self._threads,
            n_gpu_layers=self._n_gpu_layers,
            main_gpu=self._main_gpu,
            flash_attn=o.flash_attn,
            repack=repack_enabled(o.repack),
            tune=o.n_threads is None and o.n_threads_batch is None and self.spec.threads is None,
            cache_bytes=self.options.cache_ram_mib * 2**20,
            prefix_dir=str(Path(self.spec.data_dir) / "prompt-cache") if self.spec.data_dir else None,
            prefix_bytes=o.cache_disk_mib * 2**20,
            preempt=o.preempt,
        )
        self._template = ChatTemplate.of_model(self._runtime.model, o.chat_format, o.chat_template)

    def unload(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
            embedder, self._embedder = self._embedder, None
            if runtime is not None:
                runtime.close()  # running generations end with ProviderError
            if embedder is not None:
                embedder.close()
        gc.collect()

    def prompt_cache(self) -> Any:
        """The host-RAM prompt cache's counters (a ``promptcache.CacheStats``), None when it is off
        or the model is not loaded."""
        runtime = self._runtime
        return None if runtime is None or runtime.cache is None else runtime.cache.stats()

    def _loaded(self) -> Any:
        runtime = self._runtime
        if runtime is None:
            raise ProviderError(f"llamacpp: model {self.spec.id!r} is not loaded")
        return runtime

    # --- chat and completions -------------------------------------------------------------------

    def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        # Plan now, so a bad request (a template refusing it, a schema the grammar converter
        # cannot take) fails at the call rather than at the first chunk.
        self._loaded()
        gen = self._plan.plan_chat(self._template, request)
        return self._chat_chunks(gen, ctx)

    def _chat_chunks(self, gen: Any, ctx: RunContext) -> Iterator[TextChunk]:
        """The text of a chat generation, with tool calls parsed out when the request has tools."""
        chunks = self._stream(gen, ctx)
        if gen.tools:
            chunks = parse_stream(chunks, lambda: f"call_{secrets.token_hex(12)}")
        yield from chunks

    def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        self._loaded()
        return self._stream(self._plan.plan_completion(prompt, request), ctx)

    def _stream(self, gen: Any, ctx: RunContext) -> Iterator[TextChunk]:
        """Run one generation in the batch, as TextChunks; usage rides on the last one."""
        from .batching import Finish, Token
        from .textstream import TextStream

        ctx.check()
        runtime = self._loaded()
        tokens = runtime.tokens(gen)
        # Reproducibility on a GPU: with a seed the prompt is evaluated from scratch, as it was
        # the first time. A prefix-cache hit re-evaluates only the tail, in a differently shaped
        # batch; GPU kernels pick by batch shape and their rounding can tip a sampled token. The
        # CPU build gave identical text either way, so on CPU the prefix cache stays.
        reuse = not (gen.sampling.seeded and self._n_gpu_layers != 0)
        seq = runtime.start(gen, tokens, reuse_prefix=reuse, priority=int(ctx.priority))
        remove = ctx.add_cancel_callback(seq.stop)
        text = TextStream(gen.stop)
        logprobs: list[TokenLogprob] = []
        received = 0
        finish = "stop"
        try:
            while True:
                event = seq.next()
                ctx.check()  # Cancelled raises here; the finally below takes it out of the batch
                if isinstance(event, Token):
                    received += 1
                    if gen.logprobs is not None:
                        logprobs.append(self._logprob(runtime, event))
                    out = text.push(runtime.piece(event.id))
                    if out:
                        yield TextChunk(text=out, logprobs=_take(logprobs, gen))
                    if text.stopped:
                        break
                elif isinstance(event, Finish):
                    if event.error is not None:
                        raise event.error
                    out = text.finish()
                    if out:
                        yield TextChunk(text=out, logprobs=_take(logprobs, gen))
                    finish = event.reason
                    break
        finally:
            remove()
            seq.stop()  # a no-op for a finished sequence
        matched = text.matched if text.matched in gen.own_stop else None
        yield TextChunk(
            finish_reason=finish,
            prompt_tokens=len(tokens),
            cached_tokens=seq.cached,
            completion_tokens=received,
            stop_sequence=matched,
            preempted=seq.preempted or None,
        )

    @staticmethod
    def _logprob(runtime: Any, token: Any) -> TokenLogprob:
        def text(i: int) -> tuple[str, list[int]]:
            raw = runtime.piece(i)
            return raw.decode("utf-8", errors="replace"), list(raw)

        top = [TopLogprob(token=t, logprob=lp, bytes=b) for i, lp in token.top for t, b in [text(i)]]
        t, b = text(token.id)
        return TokenLogprob(token=t, logprob=token.logprob, bytes=b, top_logprobs=top)

    # --- embeddings -----------------------------------------------------------------------------

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        if not self.options.embedding:
            raise CapabilityNotSupported(
                f"model {self.spec.id!r} has embeddings turned off (options.embedding)",
                param="model",
            )
        if any(text == "" for text in inputs):
            # Zero tokens make llama_decode fail and leave the context corrupt (a double free at
            # close); OpenAI refuses empty strings too.
            raise InvalidRequest("input must not contain empty strings", param="input")
        self._loaded()
        vectors: list[list[float]] = []
        tokens = 0
        for i in range(0, len(inputs), EMBED_GROUP):
            ctx.check()
            with self._lock:
                self._loaded()
                if self._embedder is None:
                    self._embedder = self._engine.build_embedder(
                        self._path,
                        n_ctx=self.options.n_ctx,
                        threads=self._threads,
                        n_gpu_layers=self._n_gpu_layers,
                        main_gpu=self._main_gpu,
                        repack=repack_enabled(self.options.repack),
                    )
                try:
                    raw, count = self._embedder.embed(
                        inputs[i : i + EMBED_GROUP], normalize=False, truncate=True, return_count=True
                    )
                except Exception as e:
                    raise self._engine.embedding_error(e) from e
            vectors.extend(self._engine.unit_vectors(raw))
            tokens += count
        return Embeddings(vectors=vectors, prompt_tokens=tokens)


def _take(logprobs: list[TokenLogprob], gen: Any) -> list[TokenLogprob] | None:
    """The log probabilities gathered since the last chunk (for the text it carries)."""
    if gen.logprobs is None:
        return None
    taken = list(logprobs)
    logprobs.clear()
    return taken


def _offload(device: str, n_gpu_layers: int) -> tuple[int, int]:
    """(n_gpu_layers, main_gpu) for the device the scheduler chose."""
    if not device.startswith("cuda"):
        return 0, 0  # the scheduler accounted this model to the CPU: keep it there
    index = int(device.partition(":")[2] or 0)
    return (-1 if n_gpu_layers == 0 else n_gpu_layers), index
