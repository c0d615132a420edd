"""Everything that touches llama_cpp: building Llama objects, grammars, sizes and error mapping.

Imported only from ``LlamaCppProvider.load`` and later, so the daemon starts without llama_cpp.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from loom.sdk import InvalidRequest, LoomError, OutOfMemory, ProviderError, UnsupportedParameter
from loom.sdk.types import JSONObjectFormat, JSONSchemaFormat, ResponseFormat

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

        def generate(self, tokens, *args, **kwargs):
            self.loom_prompt_tokens = len(tokens)
            self.loom_sampled = 0
            self.loom_last_token = -1
            return super().generate(tokens, *args, **kwargs)

        def sample(self, *args, **kwargs):
            token = super().sample(*args, **kwargs)
            self.loom_sampled += 1
            self.loom_last_token = token
            return token

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


def grammar_for(response_format: ResponseFormat | None) -> LlamaGrammar | None:
    """The sampling grammar for a response_format; None for plain text.

    llama-cpp-python would build the same grammar from ``{"type": "json_object", "schema": ...}``,
    but it silently falls back to "any JSON" when a schema cannot be converted. Building it here
    lets an unsupported schema be refused instead of ignored.
    """
    if isinstance(response_format, JSONObjectFormat):
        return LlamaGrammar.from_string(JSON_GBNF)
    if isinstance(response_format, JSONSchemaFormat):
        schema = response_format.json_schema.schema or {"type": "object"}
        if _has_outside_ref(schema):
            # The converter would fetch an https $ref (it only asserts against it), so refuse here.
            raise UnsupportedParameter(
                "llamacpp: JSON schema $ref must point inside the schema ('#/...')",
                param="response_format",
            )
        try:
            # The schema is converted to GBNF in Python here, so a bad one fails now, not mid-stream.
            return LlamaGrammar.from_json_schema(json.dumps(schema))
        except Exception as e:
            raise UnsupportedParameter(
                f"llamacpp cannot constrain output to this JSON schema: {e}",
                param="response_format",
            ) from e
    return None


def _has_outside_ref(node: Any) -> bool:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return True
        return any(_has_outside_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_outside_ref(v) for v in node)
    return False


def generation_error(e: Exception, param: str) -> LoomError:
    """A llama_cpp exception raised mid-request, as the Loom error a client should see."""
    message = str(e) or type(e).__name__  # llama-cpp-python also fails with bare asserts
    if "exceed context window" in message:
        # Raised before any token is generated: the prompt alone does not fit in n_ctx.
        return InvalidRequest(f"llamacpp: {message}", param=param, code="context_length_exceeded")
    return ProviderError(f"llamacpp: {message}")
