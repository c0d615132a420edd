"""Options of the diffusers provider (the ``options`` table of a ``[[models]]`` entry).

Nothing here imports diffusers. ``device`` and ``dtype`` are fields of the ``[[models]]`` entry.
"""

from __future__ import annotations

from loom.sdk import OptionsError
from loom.sdk.types import GuidanceScale, Steps
from msgspec import Struct


class DiffusersOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``provider = "diffusers"``: SD 1.5, SDXL, SD 3.5, Flux, ... through diffusers' AutoPipelines."""

    #: A Hugging Face hub id ("stabilityai/sdxl-turbo") or a local folder saved by save_pretrained.
    model: str
    revision: str | None = None
    cache_dir: str | None = None
    #: Weight variant to load, e.g. "fp16" for repositories that ship half-precision files.
    variant: str | None = None
    #: Keep the pipeline's parts in CPU memory and move each to the GPU only while it runs
    #: (``enable_model_cpu_offload``): far less GPU memory, somewhat slower. CUDA only.
    cpu_offload: bool = False
    #: Compute attention in slices (``enable_attention_slicing``): less memory, a little slower.
    attention_slicing: bool = False
    #: Denoising steps when a request sets none (default: the pipeline's own).
    steps: Steps | None = None
    #: Guidance scale when a request sets none (default: the pipeline's own).
    guidance_scale: GuidanceScale | None = None

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise OptionsError("diffusers options: `model` must name a hub id or a local folder")
