"""loom.plugins.diffusers: local image generation with diffusers (SD 1.5, SDXL, SD 3.5, Flux).

One provider, ``diffusers``: text-to-image, image-to-image and inpainting. Importing this module
imports neither torch nor diffusers; the provider does when a model loads.
"""

from loom.sdk import hookimpl

from .options import DiffusersOptions
from .provider import DiffusersProvider

__all__ = ["DiffusersOptions", "DiffusersProvider", "register_providers"]


@hookimpl
def register_providers(register):
    register(DiffusersProvider)
