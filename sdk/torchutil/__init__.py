"""loom.sdk.torchutil: helpers for providers that run torch models in the daemon's process, used by
the built-in transformers, diffusers and openclip plugins and open to any third-party plugin.

It registers nothing: devices and dtypes, where weights come from, memory
measurement and release, and the common load/unload life cycle in :class:`TorchProvider`.
Importing it imports no torch; the functions that need torch import it when called.
"""

from .provider import TorchProvider
from .sources import Source, resolve_source

__all__ = ["Source", "TorchProvider", "resolve_source"]
