"""Drawing the mock's "generated" images: real PNGs whose content follows the prompt and seed.

The background takes the first colour named in the prompt (so "a red apple" comes out mostly red,
which lets a generate-then-describe pipeline be tested end to end); shapes and their colours come
from the seeded digest; the prompt's first words are written on the image.
"""

from __future__ import annotations

import io
import random
import re

from loom.sdk import InvalidRequest
from loom.sdk.types import MAX_SIDE, MIN_SIDE
from PIL import Image, ImageDraw, ImageFont

from .images import NAMED_COLOURS

#: The mock draws sides in multiples of this (within the API's MIN_SIDE..MAX_SIDE).
SIZE_STEP = 8


def validate_size(width: int, height: int) -> None:
    for side in (width, height):
        if not (MIN_SIDE <= side <= MAX_SIDE) or side % SIZE_STEP:
            raise InvalidRequest(
                f"size {width}x{height} is not supported: each side must be {MIN_SIDE}..{MAX_SIDE} "
                f"and a multiple of {SIZE_STEP}",
                param="size",
            )


def _colour(r: random.Random) -> tuple[int, int, int]:
    return (r.randrange(256), r.randrange(256), r.randrange(256))


def _background(prompt: str, r: random.Random) -> tuple[int, int, int]:
    for word in re.findall(r"[a-z]+", prompt.lower()):
        name = "gray" if word == "grey" else word
        if name in NAMED_COLOURS:
            # Jitter a little so seeds still differ, but stay well inside the named colour.
            red, green, blue = (max(0, min(255, c + r.randint(-12, 12))) for c in NAMED_COLOURS[name])
            return red, green, blue
    return _colour(r)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font: Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw(prompt: str, width: int, height: int, r: random.Random) -> Image.Image:
    """One RGB image drawn from ``prompt`` with randomness from ``r``."""
    img = Image.new("RGB", (width, height), _background(prompt, r))
    pen = ImageDraw.Draw(img)
    # Few, small shapes so the background stays the dominant colour.
    for _ in range(r.randint(2, 4)):
        w = max(2, int(width * r.uniform(0.1, 0.3)))
        h = max(2, int(height * r.uniform(0.1, 0.3)))
        x, y = r.randrange(0, width - w + 1), r.randrange(0, height - h + 1)
        box = (x, y, x + w - 1, y + h - 1)
        if r.random() < 0.5:
            pen.ellipse(box, fill=_colour(r))
        else:
            pen.rectangle(box, fill=_colour(r))
    words = " ".join(prompt.split()[:4])
    if words:
        size = max(8, min(width, height) // 12)
        margin = max(1, min(width, height) // 20)
        pen.text(
            (margin, margin),
            words,
            fill=(255, 255, 255),
            font=_font(size),
            stroke_width=1 if size >= 12 else 0,
            stroke_fill=(0, 0, 0),
        )
    return img


def blend(drawing: Image.Image, init: Image.Image, strength: float, mask: Image.Image | None) -> Image.Image:
    """Image-to-image: ``strength`` 0 keeps the init image, 1 replaces it with the drawing; where a
    mask is given only its white part is repainted (black keeps the init image)."""
    base = init.convert("RGB").resize(drawing.size, Image.Resampling.LANCZOS)
    out = Image.blend(base, drawing, max(0.0, min(1.0, strength)))
    if mask is not None:
        out = Image.composite(out, base, mask.convert("L").resize(drawing.size))
    return out


def unfocused(img: Image.Image, done: float) -> Image.Image:
    """A preview of ``img`` with ``done`` (0..1) of the work made: a coarse, blocky copy fading
    into the picture as ``done`` grows, as an image coming into focus."""
    block = max(2, min(img.size) // 4)
    small = img.resize((max(1, img.width // block), max(1, img.height // block)), Image.Resampling.BOX)
    return Image.blend(small.resize(img.size, Image.Resampling.NEAREST), img, max(0.0, min(1.0, done)))


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
