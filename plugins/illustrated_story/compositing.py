"""Merging the character into the background: cut out along a mask, not pasted as a rectangle.

Seed 002 pasted the character image over the right half of the background. Here the character is
cut out first. The mask comes from the character image's own background: the median colour of its
border is taken as the backdrop, and every pixel's colour distance from it (beyond what the
border's own noise reaches) becomes opacity, opened to drop specks and feathered at the edge.
Where the border is not one colour (a busy picture) or the cut-out covers almost nothing or
almost everything, a soft elliptical matte around the centre is used instead. The cut-out is
cropped to its mask, scaled to a share of the frame's height and stood on the ground line at
the left, centre or right, and blended with ``Image.composite``: where the mask is 0 the result
is exactly the background, where it is 255 exactly the character.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MIN_COVERAGE, MAX_COVERAGE = 0.02, 0.9
#: Border pixels further than this from the backdrop colour (median) mean a busy border.
BUSY_BORDER = 40.0
#: Alpha below this after feathering is dropped to 0, so the background stays exact there.
ALPHA_FLOOR = 8


@dataclass
class Composite:
    png: bytes  # the merged picture
    mask_png: bytes  # where the character sits in it (L, 0..255), at the output size
    cutout_png: bytes  # the character with its alpha (RGBA), cropped
    method: str  # "border-colour" or "ellipse"
    box: tuple[int, int, int, int]  # x, y, width, height of the character in the output
    coverage: float  # share of the character image the mask kept


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def border_mask(img: Image.Image) -> tuple[Image.Image, float, float]:
    """(mask, coverage, how busy the border is) from the distance to the border's median colour."""
    a = np.asarray(img, dtype=np.float32)
    h, w, _ = a.shape
    b = max(1, min(h, w) // 64)
    border = np.concatenate(
        [a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3), a[:, -b:].reshape(-1, 3)]
    )
    backdrop = np.median(border, axis=0)
    border_dist = np.linalg.norm(border - backdrop, axis=1)
    busy = float(np.median(border_dist))
    low = max(12.0, float(np.percentile(border_dist, 95)) + 6.0)
    dist = np.linalg.norm(a - backdrop, axis=2)
    alpha = np.clip((dist - low) / 24.0, 0.0, 1.0)
    mask = Image.fromarray((alpha * 255).astype(np.uint8), "L")
    mask = mask.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))  # opening: no specks
    coverage = float((np.asarray(mask) > 127).mean())
    return mask, coverage, busy


def ellipse_mask(size: tuple[int, int], feather: float) -> Image.Image:
    w, h = size
    mask = Image.new("L", size, 0)
    mx, my = 0.1 * w, 0.04 * h
    ImageDraw.Draw(mask).ellipse((mx, my, w - mx, h - my), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(feather, min(w, h) / 40)))


def cutout_mask(img: Image.Image, feather: float = 1.5) -> tuple[Image.Image, str, float]:
    mask, coverage, busy = border_mask(img)
    if busy > BUSY_BORDER or not MIN_COVERAGE <= coverage <= MAX_COVERAGE:
        mask = ellipse_mask(img.size, feather)
        return _floor(mask), "ellipse", float((np.asarray(mask) > 127).mean())
    if feather > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(feather))
    return _floor(mask), "border-colour", coverage


def _floor(mask: Image.Image) -> Image.Image:
    return mask.point(lambda v: 0 if v < ALPHA_FLOOR else v)


def composite(
    character: bytes,
    background: bytes,
    *,
    width: int,
    height: int,
    scale: float = 0.8,
    position: str = "right",
    feather: float = 1.5,
) -> Composite:
    """The character cut out and stood in the background, ``scale`` of the frame's height."""
    bg = _open(background)
    if bg.size != (width, height):
        bg = bg.resize((width, height), Image.Resampling.LANCZOS)
    ch = _open(character)
    mask, method, coverage = cutout_mask(ch, feather)
    box = mask.getbbox() or (0, 0, ch.width, ch.height)
    ch, mask = ch.crop(box), mask.crop(box)
    # Fit the cut-out into scale * height and 90% of the width, keeping its proportions.
    factor = min(scale * height / ch.height, 0.9 * width / ch.width)
    size = (max(1, round(ch.width * factor)), max(1, round(ch.height * factor)))
    ch = ch.resize(size, Image.Resampling.LANCZOS)
    mask = _floor(mask.resize(size, Image.Resampling.LANCZOS))
    margin_x, ground = round(0.04 * width), height - round(0.03 * height)
    x = {"left": margin_x, "center": (width - size[0]) // 2}.get(position, width - margin_x - size[0])
    x = max(0, min(width - size[0], x))
    y = max(0, ground - size[1])
    layer = bg.copy()
    layer.paste(ch, (x, y))
    placed = Image.new("L", (width, height), 0)
    placed.paste(mask, (x, y))
    out = Image.composite(layer, bg, placed)
    cutout = ch.convert("RGBA")
    cutout.putalpha(mask)
    return Composite(
        png=_png(out),
        mask_png=_png(placed),
        cutout_png=_png(cutout),
        method=method,
        box=(x, y, size[0], size[1]),
        coverage=round(coverage, 4),
    )
