"""TransformersEmbeddingProvider: sentence embeddings from an encoder model.

``AutoModel`` (BERT, MiniLM, E5, BGE, ...): the last layer's token vectors mean-pooled over the
attention mask (or the [CLS] token's, ``pooling = "cls"``), scaled to unit length.
"""

from __future__ import annotations

from typing import ClassVar

from loom.sdk import Capability, CapabilityNotSupported, Embeddings, RunContext
from loom.sdk.torchutil.images import is_image_uri

from .base import AutoModelProvider
from .options import EmbeddingOptions


class TransformersEmbeddingProvider(AutoModelProvider):
    name: ClassVar[str] = "transformers-embedding"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.EMBEDDING})
    Options: ClassVar[type[EmbeddingOptions]] = EmbeddingOptions
    auto_class = "AutoModel"

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        device = self.loaded_device()
        if any(is_image_uri(i) for i in inputs):
            raise CapabilityNotSupported(f"model {self.spec.id!r} embeds text only, not images", param="input")
        limit = min(self.options.max_length, self._engine.context_limit(self._model) or self.options.max_length)
        with self._lock:
            vectors, tokens = self._engine.embed_texts(
                self._model,
                self._tokenizer,
                inputs,
                device=device,
                max_length=limit,
                pooling=self.options.pooling,
                batch_size=self.options.batch_size,
                ctx=ctx,
            )
        return Embeddings(vectors=vectors, prompt_tokens=tokens)
