"""loom.plugins.transformers: local Hugging Face transformers models on torch.

Five providers, one per kind of model:

* ``transformers``: causal LMs (GPT-2 class and newer) for chat, completions and embeddings;
* ``transformers-embedding``: encoder models (BERT, MiniLM, E5, ...) for embeddings;
* ``transformers-translation``: NLLB-200, M2M100, mBART-50 and Marian translation models;
* ``transformers-vision``: captioning (BLIP) and image-text-to-text (LLaVA class) models;
* ``transformers-rerank``: cross-encoders (BGE reranker, ms-marco MiniLM, ...) for rerank.

Importing this module imports neither torch nor transformers; a provider does when a model loads.
"""

from loom.sdk import hookimpl

from .embedding import TransformersEmbeddingProvider
from .options import EmbeddingOptions, RerankOptions, TextOptions, TranslationOptions, VisionOptions
from .rerank import TransformersRerankProvider
from .text import TransformersTextProvider
from .translation import TransformersTranslationProvider
from .vision import TransformersVisionProvider

PROVIDERS = (
    TransformersTextProvider,
    TransformersEmbeddingProvider,
    TransformersTranslationProvider,
    TransformersVisionProvider,
    TransformersRerankProvider,
)

__all__ = [
    "PROVIDERS",
    "EmbeddingOptions",
    "RerankOptions",
    "TextOptions",
    "TransformersEmbeddingProvider",
    "TransformersRerankProvider",
    "TransformersTextProvider",
    "TransformersTranslationProvider",
    "TransformersVisionProvider",
    "TranslationOptions",
    "VisionOptions",
    "register_providers",
]


@hookimpl
def register_providers(register):
    for provider in PROVIDERS:
        register(provider)
