"""What the mock says about an image (``describe``) and how it scores one (``score``).

Both depend only on the image (and the text, for CLIP), never on a seed: a vision model is
deterministic for a given input.
"""

from __future__ import annotations

import re

from loom.sdk import VisionScores
from PIL import Image

from .determinism import fraction
from .images import ImageStats


def _orientation(stats: ImageStats) -> str:
    if stats.width == stats.height:
        return "square"
    return "landscape" if stats.width > stats.height else "portrait"


def _palette(stats: ImageStats) -> str:
    return ", ".join(f"{c.name} ({c.hex}, {c.share:.0%})" for c in stats.colours)


def description(img: Image.Image, stats: ImageStats, prompt: str | None, detail: str) -> str:
    """One sentence for "brief", two or three for "normal", a paragraph for "detailed"."""
    d = stats.dominant
    parts = [f"A {stats.size_text()} {_orientation(stats)} image, mostly {d.name}."]
    if detail != "brief":
        parts.append(
            f"It is {stats.brightness_text()} overall (brightness {stats.brightness:.0%})"
            f" with {'strong' if stats.contrast > 0.3 else 'low'} contrast."
        )
        if len(stats.colours) > 1:
            parts.append(f"The main colours are {_palette(stats)}.")
    if detail == "detailed":
        fmt = img.format or "raw"
        parts.append(
            f"The picture is stored as {fmt} in {img.mode} mode, aspect ratio"
            f" {stats.width / stats.height:.2f}, contrast {stats.contrast:.2f}."
        )
        parts.append(
            f"The {d.name} areas ({d.hex}) cover about {d.share:.0%} of the frame, suggesting a"
            f" {'simple, uniform' if d.share > 0.6 else 'varied, busy'} composition."
        )
    if prompt:
        parts.insert(0, f"Regarding '{prompt.strip()}':")
    return " ".join(parts)


def scores(image: bytes, stats: ImageStats, text: str) -> VisionScores:
    """CLIP in [0, 1]: a hashed base, raised when the text names the image's colours (so a test
    can check a matching caption outscores another). Aesthetic in [0, 10] from the image alone."""
    said = set(re.findall(r"[a-z]+", text.lower()))
    said |= {"gray"} if "grey" in said else set()
    matched = sum(c.share for c in stats.colours if c.name in said)
    clip = 0.1 + 0.3 * fraction("clip", image, text) + 0.6 * min(1.0, matched)
    variety = (len(stats.colours) - 1) / 2  # 0..1 for one to three dominant colours
    aesthetic = 2.0 + 4.0 * fraction("aesthetic", image) + 2.0 * stats.contrast + 2.0 * variety
    return VisionScores(clip=min(1.0, max(0.0, clip)), aesthetic=min(10.0, max(0.0, aesthetic)))
