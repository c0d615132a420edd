"""Everything that touches llama_cpp: loading the model and its batched context, the embedding
``Llama``, sizes and error mapping.

Generation does not go through ``Llama.create_completion``: that runs one sequence at a time.
:func:`load` builds the model and one context with ``parallel`` sequences and hands it to a
:class:`~.batching.Batcher` (continuous batching); :meth:`Runtime.start` starts a generation
there. Embeddings keep a ``Llama`` of their own (``embedding=True``), made on first use.

Imported only from ``LlamaCppProvider.load`` and later, so the daemon starts without llama_cpp.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals
from llama_cpp._logger import set_verbose
from llama_cpp._utils import suppress_stdout_stderr
from loom.sdk import InvalidRequest, OutOfMemory, ProviderError

from .batching import Batcher, Sequence
from .cpu import model_params
from .plan import Generation
from .prefixstore import Fingerprint, PrefixStore, model_hash
from .promptcache import PromptCache, Saved
from .sampler import SamplerChain
from .tuning import ThreadTuner

#: KV cache element size: llama.cpp's default cache type is f16.
_KV_ELEMENT_BYTES = 2
#: What a load failure says when it is about memory (the context's KV cache and compute
#: buffers are what usually fail to allocate; a bad file fails the model as often as memory).
_MEMORY_WORDS = ("memory", "alloc", "oom", "llama_context", "failed to create")


@dataclass(frozen=True, kw_only=True)
class Threads:
    """llama.cpp's ``n_threads`` (one token per sequence) and ``n_threads_batch`` (prompts)."""

    decode: int
    batch: int


class Runtime:
    """A loaded GGUF: the model, its batched context and the loop that decodes it."""

    def __init__(
        self,
        model: Any,
        context: Any,
        *,
        parallel: int,
        n_batch: int,
        tune: Threads | None,
        cache_bytes: int = 0,
        store: PrefixStore | None = None,
        preempt: bool = False,
    ) -> None:
        self.model = model
        self.context = context
        self.vocab = model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
        #: Cells of the KV cache each sequence has: the longest prompt + generation.
        self.n_ctx_slot = int(llama_cpp.llama_n_ctx_seq(context.ctx))
        self.parallel = parallel
        self._pieces: dict[int, bytes] = {}  # token -> its bytes (the vocabulary is fixed)
        tuner = None
        if tune is not None and tune.decode > 1:

            def apply(decode: int, batch: int) -> None:
                llama_cpp.llama_set_n_threads(context.ctx, decode, batch)

            tuner = ThreadTuner(apply, (tune.decode, tune.batch))
        self.batcher = Batcher(
            context.ctx,
            self.vocab,
            self.n_vocab,
            n_slots=parallel,
            n_ctx_slot=self.n_ctx_slot,
            n_batch=n_batch,
            tuner=tuner,
            cache=PromptCache(cache_bytes) if cache_bytes > 0 else None,
            store=store,
            preempt=preempt,
        )
        #: The host-RAM prompt cache (None when options.cache_ram_mib is 0) and the named prefixes.
        self.cache, self.store = self.batcher.cache, store

    def tokens(self, gen: Generation) -> list[int]:
        """The prompt's tokens, as ``Llama.create_completion`` made them."""
        if gen.chat:
            # The template wrote the special tokens as text; tokenize them as tokens.
            return self.model.tokenize(gen.text.encode("utf-8"), add_bos=gen.add_bos, special=True)
        if not gen.text:
            # An empty prompt means "generate from the beginning of a text": the BOS token.
            return [self.model.token_bos()]
        return self.model.tokenize(gen.text.encode("utf-8"), add_bos=True, special=True)

    def start(self, gen: Generation, tokens: list[int], *, reuse_prefix: bool, priority: int = 0) -> Sequence:
        """Queue one generation at ``priority`` (``loom.sdk.Priority``); raises InvalidRequest when
        its prompt does not fit a slot.

        A generation with a named prefix (``gen.cache_key``) brings its state from disk when the
        RAM cache does not hold it (read here, on the request's thread), and has its prompt's
        state written there once evaluated when the file is missing or holds another prompt."""
        room = self.n_ctx_slot - len(tokens)
        if room <= 0:
            raise InvalidRequest(
                f"llamacpp: the prompt is {len(tokens)} tokens; this model's context holds "
                f"{self.n_ctx_slot} per request (options.n_ctx)",
                param="messages" if gen.chat else "prompt",
                code="context_length_exceeded",
            )
        max_tokens = room if not gen.max_tokens or gen.max_tokens <= 0 else min(gen.max_tokens, room)
        name, preload, persist = gen.cache_key, None, False
        if name is not None and self.store is not None and reuse_prefix:
            if not self._holds(name):
                stored = self.store.load(name)
                if stored is not None:
                    state = (ctypes.c_uint8 * len(stored.state)).from_buffer(stored.state)
                    preload = Saved(stored.tokens, state, name)
            persist = self.store.wants(name, tokens)
        chain = SamplerChain(self.vocab, self.n_vocab, gen.sampling, gen.grammar)
        seq = Sequence(
            tokens,
            max_tokens=max_tokens,
            chain=chain,
            stop_ids=frozenset(gen.stop_token_ids),
            logprobs=gen.logprobs,
            reuse_prefix=reuse_prefix,
            min_tokens=min(gen.min_tokens, max_tokens),
            ignore_eos=gen.ignore_eos,
            name=name,
            preload=preload,
            persist=persist,
            priority=priority,
        )
        try:
            self.batcher.submit(seq)
        except BaseException:
            chain.close()
            raise
        return seq

    def _holds(self, name: str) -> bool:
        """Whether the RAM cache holds a state saved under ``name``."""
        cache = self.cache
        return cache is not None and any(e.name == name for e in list(cache.entries))

    def piece(self, token: int) -> bytes:
        """The bytes of one generated token (special tokens give none, as in llama-cpp-python)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = token_piece(self.vocab, token)
        return piece

    def bytes(self) -> int:
        """Weights plus the KV cache of every slot (see :func:`kv_bytes`)."""
        return weights_bytes(self.model.model) + kv_bytes(self.model.model, llama_cpp.llama_n_ctx(self.context.ctx))

    def close(self) -> None:
        self.batcher.close()
        self.context.close()
        self.model.close()


def load(
    model_path: str,
    *,
    n_ctx: int,
    parallel: int,
    n_batch: int,
    threads: Threads,
    n_gpu_layers: int,
    main_gpu: int,
    flash_attn: bool = True,
    tune: bool = False,
    cache_bytes: int = 0,
    prefix_dir: str | None = None,
    prefix_bytes: int = 0,
    repack: bool = True,
    preempt: bool = False,
) -> Runtime:
    """The model and one context of ``parallel`` sequences of ``n_ctx`` cells each. ``tune``:
    the threads were chosen from the machine, so the batch loop may move to half as many when
    they prove quicker (:mod:`.tuning`); never on a GPU, where the threads only feed it.
    ``cache_bytes``: the host-RAM prompt cache's budget (0: none); ``prefix_dir``: where named
    prefixes are kept, up to ``prefix_bytes`` (None: not kept). ``preempt``: a sequence of a higher
    priority may pause one of a lower (see :mod:`.batching`)."""
    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers == -1 else n_gpu_layers  # as Llama() does
    params.main_gpu = main_gpu
    params.use_extra_bufts = repack  # see .cpu
    if n_gpu_layers != 0:
        # The scheduler placed the model on one device; do not let llama.cpp spread it.
        params.split_mode = llama_cpp.LLAMA_SPLIT_MODE_NONE
    model = _loading(model_path, lambda: _internals.LlamaModel(path_model=model_path, params=params, verbose=False))
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = n_ctx * parallel
    cparams.n_seq_max = parallel
    # Each sequence gets its own n_ctx cells (llama.cpp's server with --no-kv-unified): one
    # request cannot take another's room, and the per-request limit is options.n_ctx.
    cparams.kv_unified = False
    cparams.n_batch = cparams.n_ubatch = n_batch
    cparams.n_threads, cparams.n_threads_batch = threads.decode, threads.batch
    cparams.no_perf = True
    # On: llama.cpp's "auto", which turns it on where the backend has it (the CPU and CUDA do).
    # Off must be said: Llama() says it, llama.cpp's default is "auto".
    cparams.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    try:
        context = _loading(model_path, lambda: _internals.LlamaContext(model=model, params=cparams, verbose=False))
        tuned = threads if tune and n_gpu_layers == 0 else None
        store = None
        if prefix_dir is not None and prefix_bytes > 0:
            fingerprint = Fingerprint(
                model=model_hash(model_path),
                n_ctx_slot=int(llama_cpp.llama_n_ctx_seq(context.ctx)),
                type_k=int(cparams.type_k),
                type_v=int(cparams.type_v),
                flash_attn=flash_attn,
                build=llama_build(),
            )
            store = PrefixStore(prefix_dir, fingerprint, prefix_bytes)
        return Runtime(
            model,
            context,
            parallel=parallel,
            n_batch=n_batch,
            tune=tuned,
            cache_bytes=cache_bytes,
            store=store,
            preempt=preempt,
        )
    except BaseException:
        model.close()
        raise


def llama_build() -> str:
    """The llama.cpp this process runs: llama-cpp-python's version (it vendors one llama.cpp
    commit per release) and llama.cpp's build number where the binding exposes it."""
    number = getattr(llama_cpp, "LLAMA_BUILD_NUMBER", None)
    return f"llama-cpp-python {llama_cpp.__version__}" + (f" build {number}" if number is not None else "")


def _loading(model_path: str, make: Any) -> Any:
    """``make()``; a failure becomes OutOfMemory when it looks like memory, else ProviderError."""
    try:
        return make()
    except MemoryError as e:
        raise OutOfMemory(f"llamacpp: out of memory loading {model_path}: {e}") from e
    except Exception as e:  # llama-cpp-python reports load failures as ValueError/RuntimeError
        message = str(e)
        if any(w in message.lower() for w in _MEMORY_WORDS):
            raise OutOfMemory(f"llamacpp: could not allocate {model_path}: {message}") from e
        raise ProviderError(f"llamacpp: could not load {model_path}: {message}") from e


def build_embedder(
    model_path: str, *, n_ctx: int, threads: Threads, n_gpu_layers: int, main_gpu: int, repack: bool = True
) -> Any:
    """A ``Llama`` with ``embedding=True`` and mean pooling: one vector per input."""
    kwargs: dict[str, Any] = {
        "model_path": model_path,
        "n_ctx": n_ctx,
        "n_threads": threads.decode,
        "n_threads_batch": threads.batch,
        "n_gpu_layers": n_gpu_layers,
        "main_gpu": main_gpu,
        "verbose": False,
        "embedding": True,
        "pooling_type": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        # A pooled sequence must fit in one micro-batch, so the batch is the whole context
        # (inputs longer than n_ctx are truncated).
        "n_batch": n_ctx,
        "n_ubatch": n_ctx,
    }
    if n_gpu_layers != 0:
        kwargs["split_mode"] = llama_cpp.LLAMA_SPLIT_MODE_NONE
    # llama.cpp prints "model default pooling_type is [-1], but [1] was specified" to stderr
    # whatever the verbosity (mean pooling is asked for on purpose): keep it out of the log.
    with model_params(repack), suppress_stdout_stderr(disable=False):
        return _loading(model_path, lambda: llama_cpp.Llama(**kwargs))


def token_piece(vocab: Any, token: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:  # longer than the buffer: -n is what it needs
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[: max(0, n)]


def weights_bytes(model: Any) -> int:
    return int(llama_cpp.llama_model_size(model))


def kv_bytes(model: Any, n_ctx: int) -> int:
    """The f16 KV cache of ``n_ctx`` cells, from the model's shape (``llama_state_get_size()``
    counts only the cells in use). Compute buffers are not included; the scheduler measures."""
    n_layer = llama_cpp.llama_model_n_layer(model)
    n_head = max(1, llama_cpp.llama_model_n_head(model))
    n_head_kv = llama_cpp.llama_model_n_head_kv(model)
    head_dim = llama_cpp.llama_model_n_embd(model) // n_head
    return int(n_ctx * n_layer * n_head_kv * head_dim * 2 * _KV_ELEMENT_BYTES)


def embedder_bytes(llm: Any, *, count_weights: bool) -> int:
    return (weights_bytes(llm.model) if count_weights else 0) + kv_bytes(llm.model, llm.n_ctx())


def unit_vectors(vectors: list[list[float]]) -> list[list[float]]:
    """Scale each vector to length 1 (llama_cpp's own normalize=True is not used: a zero vector,
    e.g. from an input with no tokens, would divide by zero there)."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.where(norms == 0.0, 1.0, norms)).tolist()


def embedding_error(e: Exception) -> ProviderError | InvalidRequest:
    """A llama_cpp exception raised while embedding, as the Loom error a client should see."""
    message = str(e) or type(e).__name__  # llama-cpp-python also fails with bare asserts
    if "exceed context window" in message:
        return InvalidRequest(f"llamacpp: {message}", param="input", code="context_length_exceeded")
    return ProviderError(f"llamacpp: {message}")
