"""Merging the character into the background (seed 002): a cut-out along a mask, not a rectangle;
the result equals the background wherever the mask is 0 and the character wherever it is 255.
Also the illustrated-story pipeline's graceful degradation when images fail."""

from __future__ import annotations

import asyncio
import io

import msgspec
import numpy as np
import pytest
from loom.plugins.illustrated_story import IllustratedStory
from loom.plugins.illustrated_story.compositing import composite, cutout_mask
from loom.sdk.errors import ProviderError
from loom.sdk.testing import FakePipelineContext
from PIL import Image, ImageDraw

W, H = 256, 192


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pixels(data: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode)).astype(np.int16)


def character_image() -> Image.Image:
    """A red figure (head and body) on a plain white backdrop, as the character agent asks for."""
    img = Image.new("RGB", (200, 200), (255, 255, 255))
    pen = ImageDraw.Draw(img)
    pen.ellipse((80, 20, 120, 60), fill=(200, 20, 20))
    pen.rectangle((70, 60, 130, 180), fill=(200, 20, 20))
    return img


def background_image() -> Image.Image:
    """A blue-to-green gradient: every pixel differs from the character's red."""
    x = np.linspace(0, 1, W)[None, :, None]
    y = np.linspace(0, 1, H)[:, None, None]
    a = np.concatenate([np.zeros((H, W, 1)) + 20, 80 + 120 * x + 0 * y, 200 - 100 * y + 0 * x], axis=2)
    return Image.fromarray(a.astype(np.uint8), "RGB")


def test_the_composite_is_the_background_outside_the_mask_and_the_character_inside():
    bg = png(background_image())
    out = composite(png(character_image()), bg, width=W, height=H, scale=0.8, position="right")
    assert out.method == "border-colour"
    merged, background, mask = pixels(out.png), pixels(bg), pixels(out.mask_png, "L")
    assert merged.shape == background.shape == (H, W, 3) and mask.shape == (H, W)
    outside, inside = mask == 0, mask == 255
    assert outside.mean() > 0.6 and inside.sum() > 500
    # Elsewhere: exactly the background. Where the character sits: the character, not the background.
    assert np.array_equal(merged[outside], background[outside])
    assert np.abs(merged[inside] - background[inside]).sum(axis=1).min() > 100
    red = merged[inside]
    assert (red[:, 0] > 150).all() and (red[:, 1] < 80).all() and (red[:, 2] < 80).all()
    # Differs from the character image too: the white backdrop is gone (no white anywhere).
    assert not ((merged > 240).all(axis=2)).any()


def test_the_mask_follows_the_figure_not_its_bounding_rectangle():
    out = composite(png(character_image()), png(background_image()), width=W, height=H)
    mask = pixels(out.mask_png, "L")
    x, y, w, h = out.box
    box = mask[y : y + h, x : x + w]
    # The head is narrower than the body: the box's top corners are background.
    assert box[: h // 8, : w // 8].max() == 0 and box[: h // 8, -(w // 8) :].max() == 0
    assert box[h // 2, w // 2] == 255
    # Soft (feathered) edges, not a hard rectangle.
    assert ((mask > 0) & (mask < 255)).sum() > 0
    assert (box == 255).mean() < 0.95


def test_the_character_stands_on_the_ground_line_at_the_chosen_side():
    ch, bg = png(character_image()), png(background_image())
    left = composite(ch, bg, width=W, height=H, position="left", scale=0.5)
    right = composite(ch, bg, width=W, height=H, position="right", scale=0.5)
    centre = composite(ch, bg, width=W, height=H, position="center", scale=0.5)
    assert left.box[0] < centre.box[0] < right.box[0]
    assert all(abs(o.box[1] + o.box[3] - (H - round(0.03 * H))) <= 1 for o in (left, right, centre))
    assert abs(left.box[3] - 0.5 * H) <= 1


def test_a_busy_picture_gets_a_soft_elliptical_matte():
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8), "RGB")
    mask, method, coverage = cutout_mask(noisy)
    m = np.asarray(mask)
    assert method == "ellipse" and 0.3 < coverage < 0.9
    assert m[0, 0] == 0 and m[-1, -1] == 0 and m[60, 50] == 255


def test_a_blank_character_image_falls_back_to_the_ellipse():
    blank = Image.new("RGB", (64, 64), (250, 250, 250))
    assert cutout_mask(blank)[1] == "ellipse"


# --- the pipeline's graceful degradation (seed 002) ---------------------------------------------


def params(**kw):
    return msgspec.convert(
        {"prompt": "a fox who learns to fly", "width": 64, "height": 64, **kw}, IllustratedStory.Params
    )


STORY = "Title: The Flying Fox\n\nA small fox wanted to fly. She built wings of leaves. At last she soared."


def run(ctx: FakePipelineContext, **kw):
    return asyncio.run(IllustratedStory().run(params(**kw), ctx))


def test_stages_and_percentages_follow_the_seed():
    ctx = FakePipelineContext(
        replies=[STORY, "A small red fox with leaf wings, smiling.", "A green hill at dawn, soft light."]
    )
    result = run(ctx)
    stages = [(pct, stage) for pct, stage, _ in ctx.progress_log]
    assert stages == [
        (0, "pending"),
        (10, "generating_story"),
        (30, "generating_story"),
        (40, "generating_story"),
        (50, "generating_images"),
        (70, "generating_images"),
        (85, "generating_images"),
        (90, "generating_images"),
        (95, "indexing"),
        (100, "completed"),
    ]
    assert result["title"] == "The Flying Fox" and not result["degraded"] and result["errors"] == []
    assert result["character_description"].startswith("A small red fox")
    assert all(result["images"][k] for k in ("character", "background", "combined", "mask"))
    prompts = [c["prompt"] for c in ctx.calls_to("generate_image")]
    assert "plain white background" in prompts[0] and "no people" in prompts[1]
    record = msgspec.json.decode(ctx.artifacts[result["files"]["json"]["path"]])
    assert [i["image_type"] for i in record["images"]] == ["character", "background", "combined"]


class FailingImages(FakePipelineContext):
    def __init__(self, fail: set[str], **kw):
        super().__init__(**kw)
        self.fail = fail

    async def generate_image(self, model, prompt, **kw):
        kind = "character" if "plain white background" in prompt else "background"
        if kind in self.fail:
            raise ProviderError(f"the GPU caught fire drawing the {kind}")
        return await super().generate_image(model, prompt, **kw)


def test_when_the_background_fails_the_story_and_character_are_delivered():
    ctx = FailingImages({"background"}, replies=[STORY])
    result = run(ctx)
    assert result["story"].startswith("A small fox") and result["degraded"]
    assert result["images"]["character"] and not result["images"]["background"] and not result["images"]["combined"]
    assert result["errors"] == [
        {"stage": "background image", "type": "ProviderError", "message": "the GPU caught fire drawing the background"}
    ]
    assert ctx.progress_log[-1][1] == "completed" and "background image" in ctx.progress_log[-1][2]


def test_when_every_image_fails_the_story_is_still_delivered():
    ctx = FailingImages({"character", "background"}, replies=[STORY])
    result = run(ctx)
    assert result["story"] and result["degraded"] and len(result["errors"]) == 2
    assert all(v is None for v in result["images"].values())
    assert "story.txt" in result["files"]["text"]["path"]
    # A resumed job retries the images that failed, and keeps the story it has.
    again = ctx.resume()
    again.fail = set()
    second = asyncio.run(IllustratedStory().run(params(), again))
    assert second["images"]["combined"] and not second["degraded"] and second["story"] == result["story"]
    assert "story" not in again.ran_steps and "character-image" in again.ran_steps


def test_an_agent_that_answers_nothing_useful_falls_back_to_the_story():
    ctx = FakePipelineContext(replies=[STORY, "ok", ""])
    result = run(ctx)
    assert result["agents"] == {"character": False, "background": False}
    assert "The Flying Fox" in result["character_description"]


@pytest.mark.parametrize("position", ["left", "center", "right"])
def test_positions_are_accepted(position):
    ctx = FakePipelineContext(replies=[STORY])
    assert run(ctx, position=position)["composite"]["box"]
