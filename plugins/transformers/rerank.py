"""TransformersRerankProvider: a cross-encoder that reads a query and a document together.

``AutoModelForSequenceClassification`` with one label (BGE reranker, ms-marco MiniLM, Jina
reranker, ...): the tokenizer joins each (query, document) pair the way the model was trained,
and the model's one logit is the pair's relevance (through a sigmoid by default: 0..1).
"""

from __future__ import annotations

from typing import Any, ClassVar

from loom.sdk import Capability, CapabilityNotSupported, InvalidRequest, ProviderError, RerankScores, RunContext
from loom.sdk.torchutil.images import is_image_uri

from .base import AutoModelProvider
from .options import RerankOptions


class TransformersRerankProvider(AutoModelProvider):
    name: ClassVar[str] = "transformers-rerank"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.RERANK})
    Options: ClassVar[type[RerankOptions]] = RerankOptions
    deterministic: ClassVar[bool] = True
    auto_class = "AutoModelForSequenceClassification"

    def _build(self, device: str, dtype: Any) -> None:
        super()._build(device, dtype)
        labels = self._model.config.num_labels
        if labels != 1:
            raise ProviderError(
                f"{self.name}: model {self.spec.id!r} is a classifier with {labels} labels; a reranker "
                "(cross-encoder) has one"
            )

    def rerank(self, query: str, documents: list[str], ctx: RunContext) -> RerankScores:
        device = self.loaded_device()
        if not documents:
            raise InvalidRequest("documents must hold at least one document", param="documents")
        for param, texts in (("query", [query]), ("documents", documents)):
            if any(is_image_uri(t) for t in texts):
                raise CapabilityNotSupported(
                    f"model {self.spec.id!r} is a text cross-encoder: it cannot read images in {param} "
                    "(a CLIP model, provider openclip, ranks images)",
                    param=param,
                )
        limit = min(self.options.max_length, self._engine.context_limit(self._model) or self.options.max_length)
        with self._lock:
            scores, tokens = self._engine.score_pairs(
                self._model,
                self._tokenizer,
                query,
                documents,
                device=device,
                max_length=limit,
                batch_size=self.options.batch_size,
                activation=self.options.activation,
                ctx=ctx,
            )
        return RerankScores(scores=scores, prompt_tokens=tokens)
