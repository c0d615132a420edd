"""LlamaCppProvider: chat, completions and embeddings from a GGUF model via llama-cpp-python.

llama_cpp is imported in :meth:`LlamaCppProvider.load` (through ``.engine``), never at import time.
"""

from __future__ import annotations

import gc
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import msgspec

from loom.sdk import (
    Capability,
    CapabilityNotSupported,
    ConfigError,
    Embeddings,
    InvalidRequest,
    LoomError,
    ModelSpec,
    Provider,
    ProviderError,
    RunContext,
    TextChunk,
)
from loom.sdk.toolcalls import parse_stream
from loom.sdk.types import ChatCompletionRequest, CompletionRequest

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
    #: Same request + seed => same text: the seed goes to llama.cpp's sampler for every generation
    #: and the prompt is re-evaluated from scratch (see ``_stream``).
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
        }
    )

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        if not isinstance(spec.options, Options):
            try:
                self.options = msgspec.convert(spec.options or {}, Options)
            except msgspec.ValidationError as e:
                raise ConfigError(f"model {spec.id!r}: {e}") from None
        # One llama context cannot serve two requests at once; concurrency slots queue here.
        self._lock = threading.Lock()
        self._engine: Any = None  # the .engine module, imported by load()
        self._plan: Any = None  # the .plan module (prompts and grammars), imported by load()
        self._template: Any = None  # the model's ChatTemplate, made by load()
        self._llm: Any = None
        self._embedder: Any = None  # a second Llama with embedding=True, made on first embed()
        self._path = ""
        self._n_gpu_layers = 0
        self._main_gpu = 0

    # --- memory ---------------------------------------------------------------------------------

    def estimate_bytes(self) -> int:
        size = resolve_gguf(self.options).stat().st_size
        per_token = max(_KV_PER_TOKEN_MIN, size // _KV_PER_TOKEN_DIVISOR)
        return int(size * _WEIGHTS_OVERHEAD) + self.options.n_ctx * per_token

    def memory_bytes(self) -> int:
        llm, embedder = self._llm, self._embedder
        if llm is None:
            return self.estimate_bytes()
        total = self._engine.llama_bytes(llm)
        if embedder is not None:
            # On CPU both Llamas mmap the same file, so the weights' pages are shared; on a GPU
            # each holds its own copy of the offloaded layers.
            total += self._engine.llama_bytes(embedder, count_weights=self._n_gpu_layers != 0)
        return total

    # --- lifecycle ------------------------------------------------------------------------------

    def load(self, device: str) -> None:
        from . import engine, plan  # llama_cpp comes in here, and only here
        from .chat_prompt import ChatTemplate

        self._engine, self._plan = engine, plan
        self._path = str(resolve_gguf(self.options))
        self._n_gpu_layers, self._main_gpu = _offload(device, self.options.n_gpu_layers)
        # Generation gets a Llama without embedding=True; embed() makes a second one on first use.
        # One embedding=True Llama can generate (llama-cpp-python 0.3.36 gave the same text), but
        # llama.cpp then outputs every prompt token: prompt evaluation ran ~1.9x slower and used
        # ~170 MB more at n_ctx 2048 for the 135M model, with a warning on every decode.
        self._llm = self._build(embedding=False)
        self._template = ChatTemplate.of_model(self._llm, self.options.chat_format, self.options.chat_template)

    def unload(self) -> None:
        with self._lock:
            for llm in (self._llm, self._embedder):
                close = getattr(llm, "close", None)
                if close is not None:
                    close()
            self._llm = self._embedder = None
        gc.collect()

    def _build(self, *, embedding: bool) -> Any:
        return self._engine.build_llama(
            self._path,
            embedding=embedding,
            n_ctx=self.options.n_ctx,
            n_threads=self.options.n_threads,
            n_gpu_layers=self._n_gpu_layers,
            main_gpu=self._main_gpu,
            chat_format=self.options.chat_format,
        )

    def _loaded(self) -> Any:
        if self._llm is None:
            raise ProviderError(f"llamacpp: model {self.spec.id!r} is not loaded")
        return self._llm

    # --- chat and completions -------------------------------------------------------------------

    def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        # Plan now, so a bad request (a template refusing it, a schema the grammar converter
        # cannot take) fails at the call rather than at the first chunk.
        self._loaded()
        gen = self._plan.plan_chat(self._template, request)
        return self._chat_chunks(gen, ctx)

    def _chat_chunks(self, gen: Any, ctx: RunContext) -> Iterator[TextChunk]:
        """The text of a chat generation, with tool calls parsed out when the request has tools."""
        chunks = self._stream(gen, ctx, param="messages")
        if gen.tools:
            chunks = parse_stream(chunks, lambda: f"call_{secrets.token_hex(12)}")
        yield from chunks

    def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        self._loaded()
        return self._stream(self._plan.plan_completion(prompt, request), ctx, param="prompt")

    def _stream(self, gen: Any, ctx: RunContext, *, param: str) -> Iterator[TextChunk]:
        """Run one generation under the lock, as TextChunks; usage rides on the last one."""
        ctx.check()
        with self._lock:
            llm = self._loaded()
            if gen.sampling.seeded and self._n_gpu_layers != 0:
                # Reproducibility on a GPU: with a seed the prompt is evaluated from scratch, as
                # it was the first time. A prefix-cache hit re-evaluates only the tail, in a
                # differently shaped batch; GPU kernels pick by batch shape and their rounding
                # can tip a sampled token. The CPU build gave identical text either way, so on
                # CPU the prompt cache stays and seeded requests do not re-read their prompt.
                llm.reset()
            stream = None
            finish: str | None = None
            try:
                stream = self._engine.stream(llm, gen)
                for chunk in stream:
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice.get("text")
                    if text:
                        logprobs = self._engine.take_logprobs(llm) if gen.logprobs is not None else None
                        yield TextChunk(text=text, logprobs=logprobs)
                    # Cancelled raises here; closing the stream below stops llama's generation.
                    ctx.check()
            except LoomError:
                raise
            except Exception as e:
                raise self._engine.generation_error(e, param) from e
            finally:
                if stream is not None:
                    stream.close()
            yield TextChunk(
                finish_reason=finish or "stop",
                prompt_tokens=llm.loom_prompt_tokens,
                completion_tokens=llm.loom_completion_tokens(),
            )

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
                if self._embedder is None:
                    self._embedder = self._build(embedding=True)
                try:
                    raw, count = self._embedder.embed(
                        inputs[i : i + EMBED_GROUP], normalize=False, truncate=True, return_count=True
                    )
                except Exception as e:
                    raise self._engine.generation_error(e, "input") from e
            vectors.extend(self._engine.unit_vectors(raw))
            tokens += count
        return Embeddings(vectors=vectors, prompt_tokens=tokens)


def _offload(device: str, n_gpu_layers: int) -> tuple[int, int]:
    """(n_gpu_layers, main_gpu) for the device the scheduler chose."""
    if not device.startswith("cuda"):
        return 0, 0  # the scheduler accounted this model to the CPU: keep it there
    index = int(device.partition(":")[2] or 0)
    return (-1 if n_gpu_layers == 0 else n_gpu_layers), index
