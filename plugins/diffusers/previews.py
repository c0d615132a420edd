"""Previews from the latents: a cheap decode, fitted to the model's own VAE.

A preview is the latents of a denoising step mapped to RGB by one linear map per latent pixel
(``rgb = latent @ W + b``, then scaled up to the image's size): the "latent-to-RGB linear
approximation" image UIs show while they sample, at the cost of a matrix product, where a VAE
decode costs as much as a few denoising steps. ``W`` and ``b`` are not a table of numbers for
known model families: they are fitted, the first time a model is asked for a preview, by least
squares to what the model's own VAE decoder makes of latents like those a denoising loop holds:
the encodings of a few dozen small colour images (solid colours and mosaics) and as many of
smooth noise, in the space the pipeline denoises in (the VAE's ``shift_factor`` and
``scaling_factor`` applied). So any VAE gets its own map, whatever its channel count: SD 1.x/2.x
and SDXL (4 channels), SD 3.x and Flux (16; Flux's packed latents are unpacked first). It costs
one encode and one decode of 35 and 70 latents of 8x8 (64x64 pixels) per loaded model, once.

Imported with torch, from ``engine`` (the provider's runtime), never by the daemon.
"""

from __future__ import annotations

import io
from typing import Any

import torch

#: Latent pixels per side of a fitting image.
FIT_SIDE = 8
#: Mosaics among the fitting images (besides the 27 solid colours).
MOSAICS = 8


def _fitting_images(scale: int) -> torch.Tensor:
    """The images the map is fitted on, in [-1, 1], (N, 3, FIT_SIDE*scale, FIT_SIDE*scale)."""
    levels = torch.tensor([0.0, 0.5, 1.0])
    solid = torch.cartesian_prod(levels, levels, levels)  # 27 colours
    side = FIT_SIDE * scale
    images = [c.view(3, 1, 1).expand(3, side, side) for c in solid]
    g = torch.Generator().manual_seed(0)
    for _ in range(MOSAICS):
        blocks = torch.rand(3, FIT_SIDE // 2, FIT_SIDE // 2, generator=g)  # blocks of 2x2 latent pixels
        images.append(blocks.repeat_interleave(2 * scale, 1).repeat_interleave(2 * scale, 2))
    return torch.stack(images) * 2 - 1


def fit(pipe: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)``: W (channels, 3) and b (3,) mapping the pipeline's latents to RGB in [-1, 1],
    fitted to what the VAE's decoder makes of latents like those a denoising loop holds: the
    encodings of colour images (where it ends) and smooth noise (where it starts). A half
    precision VAE that overflows (SDXL's does; diffusers upcasts it to decode) is fitted again
    on a float32 copy."""
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    found = _fit(pipe.vae, scale)
    if found is None:
        import copy

        found = _fit(copy.deepcopy(pipe.vae).float(), scale)
    if found is None:
        raise ValueError("the VAE's outputs are not finite: no preview map can be fitted")
    return found


def _fit(vae: Any, scale: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The map for ``vae`` as it is, or None when its outputs are not finite."""
    param = next(vae.parameters())
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    scaling = float(getattr(vae.config, "scaling_factor", None) or 1.0)
    images = _fitting_images(scale).to(param.device, param.dtype)
    with torch.inference_mode():
        encoded = (vae.encode(images).latent_dist.mean - shift) * scaling
        g = torch.Generator().manual_seed(1)
        noise = torch.randn(len(images), encoded.shape[1], FIT_SIDE // 2, FIT_SIDE // 2, generator=g)
        noise = noise.repeat_interleave(2, 2).repeat_interleave(2, 3).to(param.device, param.dtype)
        latents = torch.cat([encoded, noise])
        decoded = vae.decode(latents / scaling + shift).sample.float().cpu()
    latents = latents.float().cpu()
    if not (torch.isfinite(latents).all() and torch.isfinite(decoded).all()):
        return None
    # The colour each latent pixel becomes: the decoded images averaged over scale x scale blocks.
    target = torch.nn.functional.avg_pool2d(decoded, scale)
    h, w = latents.shape[-2:]
    target = target[..., :h, :w]
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(x, y).solution  # (channels + 1, 3)
    return solution[:-1], solution[-1]


class Previewer:
    """Draws previews for one pipeline; the map is fitted on first use and kept."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._map: tuple[torch.Tensor, torch.Tensor] | None = None

    def png(self, latents: torch.Tensor, width: int, height: int) -> bytes:
        """The first image of ``latents`` (a step's, as the pipeline holds them) as a PNG of
        ``width`` x ``height``."""
        from PIL import Image

        if self._map is None:
            self._map = fit(self.pipe)
        weights, bias = self._map
        lat = self._spatial(latents, width, height)[0].float().cpu()  # (C, h, w)
        rgb = torch.einsum("chw,ck->khw", lat, weights) + bias.view(3, 1, 1)
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        img = Image.fromarray(pixels, "RGB").resize((width, height), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    def _spatial(self, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Latents as (batch, channels, h, w): Flux-style packed ones (batch, tokens, channels*4)
        unpacked by the pipeline's own ``_unpack_latents``."""
        if latents.ndim == 4:
            return latents
        unpack = getattr(self.pipe, "_unpack_latents", None)
        if latents.ndim == 3 and unpack is not None:
            return unpack(latents, height, width, self.pipe.vae_scale_factor)
        raise ValueError(f"latents of shape {tuple(latents.shape)} have no known layout for a preview")
