"""loom.plugins.torchutil: what the torch-based providers share (transformers, diffusers, openclip).

Not a plugin (it registers nothing): devices and dtypes, where weights come from, memory
measurement and release, and the common load/unload life cycle in :class:`TorchProvider`.
Importing it imports no torch; the functions that need torch import it when called.
"""

from .provider import TorchProvider
from .sources import Source, resolve_source

__all__ = ["Source", "TorchProvider", "resolve_source"]
