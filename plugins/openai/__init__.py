"""loom.plugins.openai: models served by any OpenAI-compatible service (OpenAI, x.ai, Ollama, vLLM,
LocalAI, another Loom), through the official ``openai`` package.

Services are named instances in ``[plugins.openai.instances.NAME]``; a ``[[models]]`` entry with
``provider = "openai"`` picks one. Importing this module does not import ``openai``: the provider
does that on its first call.
"""

from loom.sdk import hookimpl

from .options import Instance, ModelOptions, PluginOptions
from .provider import OpenAIProvider

__all__ = ["Instance", "ModelOptions", "OpenAIProvider", "PluginOptions", "register_providers"]


@hookimpl
def register_providers(register):
    register(OpenAIProvider)
