"""LlamaCppProvider: chat, completions and embeddings from a GGUF model via llama-cpp-python.

llama_cpp is imported in :meth:`LlamaCppProvider.load` (through ``.engine``), never at import time.
"""

from __future__ import annotations

import gc
import random
import threading
from collections.abc import Callable, Iterator
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
from loom.sdk.types import ChatCompletionRequest, ChatMessage, CompletionRequest

from .options import Options, resolve_gguf

#: OpenAI's sampling defaults, used when a request leaves them out. llama.cpp's own top_k=40 and
#: min_p=0.05 stay on: they are not OpenAI parameters, and small local models ramble without them.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
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
        from . import engine  # llama_cpp comes in here, and only here

        self._engine = engine
        self._path = str(resolve_gguf(self.options))
        self._n_gpu_layers, self._main_gpu = _offload(device, self.options.n_gpu_layers)
        # Generation gets a Llama without embedding=True; embed() makes a second one on first use.
        # One embedding=True Llama can generate (llama-cpp-python 0.3.36 gave the same text), but
        # llama.cpp then outputs every prompt token: prompt evaluation ran ~1.9x slower and used
        # ~170 MB more at n_ctx 2048 for the 135M model, with a warning on every decode.
        self._llm = self._build(embedding=False)

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
        # Validate now, so a bad request fails at the call rather than at the first chunk.
        self._loaded()
        messages = [_message(m) for m in request.messages]
        grammar = self._engine.grammar_for(request.response_format)

        def start(llm: Any, seed: int) -> Iterator[dict]:
            return llm.create_chat_completion(
                messages=messages,
                stream=True,
                max_tokens=request.token_limit(),
                stop=request.stop_list(),
                seed=seed,
                grammar=grammar,
                **_sampling(request),
            )

        return self._stream(start, _chat_delta, request.seed, ctx, param="messages")

    def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        self._loaded()

        def start(llm: Any, seed: int) -> Iterator[dict]:
            # llama-cpp-python cannot start from zero tokens (it asserts); an empty prompt means
            # "generate from the beginning of a text", which is the BOS token.
            return llm.create_completion(
                prompt or [llm.token_bos()],
                stream=True,
                max_tokens=request.max_tokens,
                stop=request.stop_list(),
                seed=seed,
                **_sampling(request),
            )

        return self._stream(start, _completion_delta, request.seed, ctx, param="prompt")

    def _stream(
        self,
        start: Callable[[Any, int], Iterator[dict]],
        delta: Callable[[dict], str | None],
        seed: int | None,
        ctx: RunContext,
        *,
        param: str,
    ) -> Iterator[TextChunk]:
        """Run one llama_cpp stream under the lock, as TextChunks; usage rides on the last one."""
        ctx.check()
        with self._lock:
            llm = self._loaded()
            if seed is not None and self._n_gpu_layers != 0:
                # Reproducibility on a GPU: with a seed the prompt is evaluated from scratch, as
                # it was the first time. A prefix-cache hit re-evaluates only the tail, in a
                # differently shaped batch; GPU kernels pick by batch shape and their rounding
                # can tip a sampled token. The CPU build gave identical text either way, so on
                # CPU the prompt cache stays and seeded requests do not re-read their prompt.
                llm.reset()
            stream = None
            finish: str | None = None
            try:
                stream = start(llm, _sampling_seed(seed))
                for chunk in stream:
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = delta(choice)
                    if text:
                        yield TextChunk(text=text)
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


def _message(message: ChatMessage) -> dict[str, str]:
    if message.images():
        raise CapabilityNotSupported("llamacpp models do not read images", param="messages")
    # Chat templates know system/user/assistant; OpenAI's "developer" is the system role.
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": message.text()}


def _sampling(request: ChatCompletionRequest | CompletionRequest) -> dict[str, float]:
    return {
        "temperature": DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
        "top_p": DEFAULT_TOP_P if request.top_p is None else request.top_p,
        "presence_penalty": request.presence_penalty or 0.0,
        "frequency_penalty": request.frequency_penalty or 0.0,
    }


def _sampling_seed(seed: int | None) -> int:
    """The uint32 seed llama.cpp samples with: the client's, or a fresh random one.

    Always passed explicitly: left out, llama-cpp-python derives each seed from the previous one,
    which repeats the same sequence after every restart.
    """
    random_seed = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED means "random": never send it
    if seed is None:
        return random.randrange(random_seed)
    value = seed & 0xFFFFFFFF  # OpenAI seeds are any int; wrap negatives and big ones
    return value - 1 if value == random_seed else value


def _chat_delta(choice: dict) -> str | None:
    return choice.get("delta", {}).get("content")


def _completion_delta(choice: dict) -> str | None:
    return choice.get("text")
