"""loom.plugins.openclip: CLIP embeddings and image scoring (CLIP + LAION aesthetics) with open_clip.

One provider, ``openclip``: text and image embeddings, and ``/v1/vision/score``. Importing this
module imports neither torch nor open_clip; the provider does when a model loads.
"""

from loom.sdk import hookimpl

from .options import OpenClipOptions
from .provider import OpenClipProvider

__all__ = ["OpenClipOptions", "OpenClipProvider", "register_providers"]


@hookimpl
def register_providers(register):
    register(OpenClipProvider)
