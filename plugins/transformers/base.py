"""The life cycle shared by the text and embedding providers: a tokenizer and a model loaded
with one transformers ``Auto`` class, by path or hub id, then placed on the device."""

from __future__ import annotations

from typing import Any, ClassVar

from loom.sdk import ModelSpec
from loom.sdk.torchutil import TorchProvider


class AutoModelProvider(TorchProvider):
    #: The transformers class that loads the weights, e.g. "AutoModelForCausalLM".
    auto_class: ClassVar[str]

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engine: Any = None
        self._model: Any = None
        self._tokenizer: Any = None

    def _import_runtime(self) -> None:
        from . import engine  # torch and transformers come in here

        self._engine = engine

    def _auto(self) -> Any:
        import transformers

        return getattr(transformers, self.auto_class)

    def _prepare(self) -> None:
        self._engine.import_architecture(self._auto(), self.options, self.source())

    def _build(self, device: str, dtype: Any) -> None:
        from transformers import AutoTokenizer

        e, source = self._engine, self.source()
        self._tokenizer = AutoTokenizer.from_pretrained(source.location, **e.tokenizer_kwargs(self.options, source))
        model = self._auto().from_pretrained(source.location, **e.load_kwargs(self.options, source, device, dtype))
        self._model = e.place(model, device, self.options)
        if self._tokenizer.pad_token is None:  # GPT-2 has none; batches of embeddings need one
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        self._tokenizer.padding_side = "right"

    def _modules(self) -> list[Any]:
        return [self._model]

    def _drop(self) -> None:
        self._model = self._tokenizer = None
