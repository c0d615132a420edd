"""loom.plugins.llamacpp: GGUF models (chat, completions, embeddings) on llama-cpp-python.

Importing this module does not import llama_cpp; the provider does that when a model loads.
"""

from loom.sdk import hookimpl

from .options import Options
from .provider import LlamaCppProvider

__all__ = ["LlamaCppProvider", "Options", "register_providers"]


@hookimpl
def register_providers(register):
    register(LlamaCppProvider)
