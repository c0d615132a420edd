"""Previews from the diffusers provider on the tiny random-weight Stable Diffusion pipeline: the
provider driven directly (which steps, what the pictures are), and ``stream=True`` with the
``openai`` package on a live daemon, where the previews cross the worker process's socket."""

from __future__ import annotations

import base64
import io

import msgspec
import pytest

pytest.importorskip("torch")

import torch
from loom.sdk import ImageJob, ModelSpec, RunContext
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)
from PIL import Image


def make(cls, **options):
    opts = msgspec.convert(options, cls.Options)
    return cls(ModelSpec(id=f"test-{cls.name}", provider=cls.name, options=opts, capabilities=cls.capabilities))


@pytest.fixture(scope="module")
def sd(tiny_models):
    from loom.plugins.diffusers import DiffusersProvider

    provider = make(DiffusersProvider, model=str(tiny_models["sd"]))
    provider.load("cpu")
    yield provider
    provider.unload()


def picture(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG"
    return img


def test_previews_at_evenly_spaced_steps(sd):
    seen: list[tuple[str, int, int]] = []
    ctx = RunContext(
        on_progress=lambda done, total, _: seen.append(("step", done, total)),
        on_preview=lambda image, index: seen.append(("preview", index, picture(image).size[0])),
    )
    job = ImageJob(prompt="a lighthouse", width=64, height=48, steps=6, seed=1, partial_images=2)
    sd.generate_images(job, ctx)
    # After steps 2 and 4 of 6, each right after its step's progress report, at the image's size.
    assert [s for s in seen if s[0] == "preview"] == [("preview", 0, 64), ("preview", 1, 64)]
    assert seen.index(("preview", 0, 64)) == seen.index(("step", 2, 6)) + 1
    assert seen.index(("preview", 1, 64)) == seen.index(("step", 4, 6)) + 1


def test_no_previews_unless_asked(sd):
    previews: list[int] = []
    ctx = RunContext(on_preview=lambda image, index: previews.append(index))
    sd.generate_images(ImageJob(prompt="x", width=64, height=64, steps=4, seed=1), ctx)
    assert previews == []


class LinearVAE:
    """A VAE whose decoder is exactly linear per latent pixel (a 1x1 convolution, then each latent
    pixel spread over its 8x8 block), with diffusers' interface: what the fitted preview map must
    recover. (The tiny random-weight VAE's decoder barely depends on its latents, so it cannot
    show that the map is right; a trained VAE's is close to linear in this sense.)"""

    def __init__(self, weights, bias, scaling: float, shift: float) -> None:
        from types import SimpleNamespace

        self.weights, self.bias = weights, bias  # (C, 3), (3,): latent pixel -> RGB
        self.config = SimpleNamespace(scaling_factor=scaling, shift_factor=shift)
        self._param = torch.zeros(1)

    def parameters(self):
        return iter([self._param])

    def encode(self, images):
        from types import SimpleNamespace

        rgb = torch.nn.functional.avg_pool2d(images.float(), 8) - self.bias.view(1, 3, 1, 1)
        latents = torch.einsum("nkhw,kc->nchw", rgb, torch.linalg.pinv(self.weights))
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=latents))

    def decode(self, z):
        from types import SimpleNamespace

        rgb = torch.einsum("nchw,ck->nkhw", z.float(), self.weights) + self.bias.view(1, 3, 1, 1)
        return SimpleNamespace(sample=rgb.repeat_interleave(8, 2).repeat_interleave(8, 3))


def test_the_preview_map_is_fitted_to_the_decoder():
    from types import SimpleNamespace

    from loom.plugins.diffusers.previews import fit

    g = torch.Generator().manual_seed(3)
    weights, bias = torch.randn(4, 3, generator=g) * 0.3, torch.tensor([0.1, -0.05, 0.02])
    scaling, shift = 0.5, 0.1
    pipe = SimpleNamespace(vae=LinearVAE(weights, bias, scaling, shift), vae_scale_factor=8)
    got_w, got_b = fit(pipe)
    # The pipeline's latents are (z - shift) * scaling: RGB = latents @ (W / scaling) + (b + shift * sum(W)).
    assert torch.allclose(got_w, weights / scaling, atol=1e-4)
    assert torch.allclose(got_b, bias + shift * weights.sum(0), atol=1e-4)


class HalfOverflowVAE(LinearVAE):
    """A half-precision VAE whose decoder overflows in float16 (as SDXL's does) until upcast."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._param = torch.zeros(1, dtype=torch.float16)

    def float(self):
        self._param = self._param.float()
        return self

    def decode(self, z):
        out = super().decode(z)
        if self._param.dtype == torch.float16:
            out.sample = torch.full_like(out.sample, float("inf"))
        return out


def test_a_vae_that_overflows_in_half_precision_is_fitted_in_float32():
    from types import SimpleNamespace

    from loom.plugins.diffusers.previews import fit

    weights, bias = torch.randn(4, 3, generator=torch.Generator().manual_seed(4)) * 0.3, torch.zeros(3)
    vae = HalfOverflowVAE(weights, bias, 1.0, 0.0)
    got_w, _ = fit(SimpleNamespace(vae=vae, vae_scale_factor=8))
    assert torch.allclose(got_w, weights, atol=1e-3)
    assert vae._param.dtype == torch.float16  # a copy was upcast, not the model


def test_previews_show_the_latents_they_are_given(sd):
    from loom.plugins.diffusers.engine import previewer

    drawer = previewer(sd._pipes["text2image"])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 4, 6, 8, generator=g), torch.randn(1, 4, 6, 8, generator=g)
    assert drawer.png(a, 64, 48) == drawer.png(a, 64, 48) != drawer.png(b, 64, 48)
    assert picture(drawer.png(a, 64, 48)).size == (64, 48)


# --- over HTTP ------------------------------------------------------------------------------------


def b64_png(item) -> bytes:
    data = base64.b64decode(item.b64_json)
    picture(data)
    return data


def test_streamed_generation_sends_previews_then_the_image(torch_client):
    extra = {"seed": 11, "steps": 4}
    stream = torch_client.images.generate(
        model="tiny-sd", prompt="a lighthouse at dusk", size="64x48", stream=True, partial_images=3, extra_body=extra
    )
    events = list(stream)
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 3 + [ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:3]] == [0, 1, 2]
    images = [b64_png(e) for e in events]
    assert all(picture(i).size == (64, 48) for i in images)
    assert len(set(images[:3])) == 3  # each step's latents differ
    plain = torch_client.images.generate(model="tiny-sd", prompt="a lighthouse at dusk", size="64x48", extra_body=extra)
    assert events[-1].b64_json == plain.data[0].b64_json


def test_streamed_edit_sends_previews(torch_client):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 120, 220)).save(buf, "PNG")
    events = list(
        torch_client.images.edit(
            model="tiny-sd",
            image=("in.png", buf.getvalue(), "image/png"),
            prompt="make it night",
            size="64x64",
            stream=True,
            partial_images=1,
            extra_body={"seed": 3, "strength": 0.6, "steps": 4},
        )
    )
    assert [type(e) for e in events] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]
