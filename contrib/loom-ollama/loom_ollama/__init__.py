"""loom-ollama: serve models from a running Ollama through Loom, over Ollama's native API.

Registers the ``ollama`` provider (chat, completions, embeddings). Loom's scheduler queues and
cancels the requests; Ollama keeps the weights, so the provider is remote (``local = False``).
"""

from loom.sdk import hookimpl

from .options import OllamaOptions, PluginOptions
from .provider import OllamaProvider

__all__ = ["OllamaOptions", "OllamaProvider", "PluginOptions", "register_providers"]


@hookimpl
def register_providers(register):
    register(OllamaProvider)
