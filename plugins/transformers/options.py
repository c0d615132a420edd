"""Options of the transformers providers (the ``options`` table of a ``[[models]]`` entry).

Nothing here imports transformers: options are decoded at start-up, before any model loads.
``device`` and ``dtype`` are not options: they are fields of the ``[[models]]`` entry itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

from loom.sdk import OptionsError
from msgspec import Meta, Struct, field

Positive = Annotated[int, Meta(ge=1)]


class ModelOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Where the weights are and how to read them; shared by every transformers provider."""

    #: A Hugging Face hub id ("facebook/nllb-200-distilled-600M") or a local folder.
    model: str
    revision: str | None = None
    #: The hub cache to read (and download) into; default: HF_HUB_CACHE / HF_HOME as usual.
    cache_dir: str | None = None
    #: Run the model repository's own Python code (some architectures need it). Off by default.
    trust_remote_code: bool = False
    #: Load the weights in 8 bits with bitsandbytes (CUDA only; bitsandbytes must be installed).
    load_in_8bit: bool = False

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise OptionsError("transformers options: `model` must name a hub id or a local folder")


class TextOptions(ModelOptions, frozen=True):
    """``provider = "transformers"``: any causal LM (GPT-2 class and newer)."""

    #: Tokens generated when a request sets no max_tokens.
    max_new_tokens: Positive = 256
    #: A Jinja chat template for models that ship none; without one, chat turns are written as
    #: "User: ...\nAssistant:" lines.
    chat_template: str | None = None


class EmbeddingOptions(ModelOptions, frozen=True):
    """``provider = "transformers-embedding"``: an encoder (BERT, MiniLM, E5, ...) for embeddings."""

    #: Tokens per input; longer inputs are truncated.
    max_length: Positive = 512
    #: Mean of the token vectors (sentence-transformers' default) or the first ([CLS]) token's.
    pooling: Literal["mean", "cls"] = "mean"
    batch_size: Positive = 16


class RerankOptions(ModelOptions, frozen=True):
    """``provider = "transformers-rerank"``: a cross-encoder (BGE reranker, ms-marco MiniLM, ...)."""

    #: Tokens per (query, document) pair; the document is cut to fit.
    max_length: Positive = 512
    batch_size: Positive = 16
    #: The logit through a sigmoid (0..1, sentence-transformers' default for one label) or as it is.
    activation: Literal["sigmoid", "none"] = "sigmoid"


class TranslationOptions(ModelOptions, frozen=True):
    """``provider = "transformers-translation"``: NLLB-200, M2M100, mBART-50 or Marian."""

    num_beams: Positive = 4
    #: Tokens generated per chunk of source text.
    max_new_tokens: Positive = 512
    #: Long text is split into sentences, grouped into chunks of at most this many tokens.
    chunk_tokens: Annotated[int, Meta(ge=8)] = 200
    batch_size: Positive = 8
    #: For models whose tokenizer does not say which languages they translate (single-pair
    #: Marian models): [source, target], e.g. ["en", "de"].
    languages: list[str] = field(default_factory=list)


class VisionOptions(ModelOptions, frozen=True):
    """``provider = "transformers-vision"``: captioning (BLIP) and image-text-to-text models."""

    #: Tokens for a description when the request sets none; default by detail (30 / 80 / 250).
    max_new_tokens: Positive | None = None
