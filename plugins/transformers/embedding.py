"""TransformersEmbeddingProvider: sentence embeddings from an encoder model.

``AutoModel`` (BERT, MiniLM, E5, BGE, ...): the last layer's token vectors mean-pooled over the
attention mask (or the [CLS] token's, ``pooling = "cls"``), scaled to unit length.
"""

from __future__ import annotations

from typing import Any, ClassVar

from loom.plugins.torchutil import TorchProvider
from loom.plugins.torchutil.images import is_image_uri
from loom.sdk import Capability, CapabilityNotSupported, Embeddings, ModelSpec, RunContext

from .options import EmbeddingOptions


class TransformersEmbeddingProvider(TorchProvider):
    name: ClassVar[str] = "transformers-embedding"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.EMBEDDING})
    Options: ClassVar[type[EmbeddingOptions]] = EmbeddingOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engine: Any = None
        self._model: Any = None
        self._tokenizer: Any = None

    def _import_runtime(self) -> None:
        from . import engine

        self._engine = engine

    def _prepare(self) -> None:
        from transformers import AutoModel

        self._engine.import_architecture(AutoModel, self.options, self.source())

    def _build(self, device: str, dtype: Any) -> None:
        from transformers import AutoModel, AutoTokenizer

        e, source = self._engine, self.source()
        self._tokenizer = AutoTokenizer.from_pretrained(source.location, **e.tokenizer_kwargs(self.options, source))
        model = AutoModel.from_pretrained(source.location, **e.load_kwargs(self.options, source, device, dtype))
        self._model = e.place(model, device, self.options)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        self._tokenizer.padding_side = "right"

    def _modules(self) -> list[Any]:
        return [self._model]

    def _drop(self) -> None:
        self._model = self._tokenizer = None

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        device = self.loaded_device()
        if any(is_image_uri(i) for i in inputs):
            raise CapabilityNotSupported(f"model {self.spec.id!r} embeds text only, not images", param="input")
        limit = min(self.options.max_length, self._engine.context_limit(self._model) or self.options.max_length)
        with self._lock:
            vectors, tokens = self._engine.embed_texts(
                self._model, self._tokenizer, inputs, device=device, max_length=limit,
                pooling=self.options.pooling, batch_size=self.options.batch_size, ctx=ctx,
            )  # fmt: skip
        return Embeddings(vectors=vectors, prompt_tokens=tokens)
