"""Options of the openclip provider. Nothing here imports open_clip or torch."""

from __future__ import annotations

from loom.sdk import OptionsError
from msgspec import Struct


class OpenClipOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``provider = "openclip"``: a CLIP model, plus an optional LAION aesthetic head.

    ``model`` is one of: an open_clip architecture name ("ViT-L-14", with ``pretrained``), a
    hub repository ("hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K"), or a local folder holding
    ``open_clip_config.json`` and the weights.
    """

    model: str
    #: For an architecture name: a pretrained tag ("openai", "laion2b_s32b_b82k") or a
    #: checkpoint file on disk.
    pretrained: str | None = None
    #: A model-config JSON file for a custom architecture; it is registered with open_clip under
    #: its file name without ".json", which is what ``model`` then names.
    config: str | None = None
    #: The LAION aesthetic predictor to score with: a linear or MLP head on the CLIP image
    #: embedding, as a state dict in a .pth / .pt / .safetensors file (e.g.
    #: "sac+logos+ava1-l14-linearMSE.pth" for ViT-L-14). Without it, /v1/vision/score is a 400.
    aesthetic_head: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise OptionsError("openclip options: `model` must name an architecture, hub repo or folder")
