"""Everything that touches torch and diffusers: loading and configuring pipelines, running them.

Imported only from ``DiffusersProvider.load`` and later, so the daemon starts without diffusers.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import diffusers
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image
from loom.sdk import CapabilityNotSupported, InvalidRequest, LoomError, OutOfMemory, ProviderError
from loom.sdk.torchutil.sources import Source

from .options import DiffusersOptions
from .previews import Previewer

#: Image-to-image and inpainting pipelines are made from the text-to-image one with
#: ``from_pipe``: they share its modules, so they cost no extra memory.
DERIVED = {"image2image": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}


def import_pipeline(source: Source, options: DiffusersOptions) -> None:
    """Import the pipeline and component classes the model's ``model_index.json`` names
    (diffusers imports them lazily), so that loading measures the model, not the code."""
    try:
        from diffusers import DiffusionPipeline

        kwargs = {"revision": options.revision} if options.revision else {}
        if not source.local and options.cache_dir:
            kwargs["cache_dir"] = source.cache_dir
        index = DiffusionPipeline.load_config(source.location, **kwargs)
        getattr(diffusers, index.get("_class_name", ""), None)
        for value in index.values():
            if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
                getattr(importlib.import_module(value[0]), value[1], None)
    except Exception:
        pass


def load_pipeline(source: Source, options: DiffusersOptions, dtype: Any) -> Any:
    kwargs: dict[str, Any] = {"dtype": dtype}
    if options.variant:
        kwargs["variant"] = options.variant
    if options.revision:
        kwargs["revision"] = options.revision
    if not source.local and options.cache_dir:
        kwargs["cache_dir"] = source.cache_dir
    return AutoPipelineForText2Image.from_pretrained(source.location, **kwargs)


def configure(pipe: Any, device: str, options: DiffusersOptions) -> Any:
    """Place ``pipe`` on ``device`` (or offload it), with attention slicing if asked for."""
    pipe.set_progress_bar_config(disable=True)
    if options.attention_slicing:
        pipe.enable_attention_slicing()
    if options.cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def derive(kind: str, base: Any, device: str, options: DiffusersOptions, model_id: str) -> Any:
    try:
        pipe = DERIVED[kind].from_pipe(base)
    except ValueError as e:
        what = "image-to-image" if kind == "image2image" else "inpainting (a mask)"
        raise CapabilityNotSupported(
            f"model {model_id!r} ({type(base).__name__}) cannot do {what}: {e}", param="image"
        ) from None
    return configure(pipe, device, options)


def size_multiple(pipe: Any) -> int:
    """What each side of an image must be a multiple of for ``pipe``.

    The VAE scales by ``vae_scale_factor`` (8 for SD, SDXL, SD3, Flux); transformer-based
    pipelines (SD3, Flux) also pack latents in 2x2 patches, which doubles it.
    """
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    if getattr(pipe, "transformer", None) is not None:
        factor *= 2
    return max(8, factor)


def parameters(pipe: Any) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def modules(pipe: Any) -> list[Any]:
    if pipe is None:
        return []
    return [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]


def generators(seed: int, n: int) -> list[Any]:
    """One CPU generator per image, seeded seed, seed+1, ...: the same request with the same seed
    gives the same images, and the noise does not depend on the device."""
    return [torch.Generator(device="cpu").manual_seed((seed + i) % 2**63) for i in range(n)]


def previewer(pipe: Any) -> Previewer:
    """The pipeline's preview drawer (made once per pipeline: its latent-to-RGB map is fitted
    on first use)."""
    found = getattr(pipe, "_loom_previewer", None)
    if found is None:
        found = pipe._loom_previewer = Previewer(pipe)
    return found


def run(pipe: Any, kwargs: dict[str, Any], on_step: Callable[[int, int, Any], bool], model_id: str) -> list[Any]:
    """Call ``pipe`` with a step callback; ``on_step(done, total, latents)`` returns False to stop it.

    Stopping sets ``pipe._interrupt``, which diffusers checks at the top of each step.
    """

    def callback(p: Any, step: int, timestep: Any, tensors: dict) -> dict:
        total = getattr(p, "_num_timesteps", None) or kwargs.get("num_inference_steps") or step + 1
        if not on_step(step + 1, int(total), tensors.get("latents")):
            p._interrupt = True
        return tensors

    try:
        with torch.inference_mode():
            result = pipe(**kwargs, callback_on_step_end=callback, output_type="pil")
    except LoomError:
        raise
    except (MemoryError, torch.OutOfMemoryError) as e:
        raise OutOfMemory(f"diffusers model {model_id!r} ran out of memory: {e}") from e
    except ValueError as e:
        # diffusers checks its inputs with ValueError (sizes, strength, step counts, ...).
        raise InvalidRequest(f"diffusers model {model_id!r} cannot make this image: {e}") from None
    except Exception as e:
        raise ProviderError(f"diffusers model {model_id!r} failed: {type(e).__name__}: {e}") from e
    return list(result.images)
