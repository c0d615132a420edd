"""Decoding images and summarising them: what the mock "sees" (size, colours, brightness)."""

from __future__ import annotations

import base64
import binascii
import io
import urllib.parse

import numpy as np
from loom.sdk import InvalidRequest
from msgspec import Struct
from PIL import Image

# A small palette to name colours with; the nearest entry (RGB distance) names a pixel average.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "red": (220, 30, 30),
    "green": (40, 170, 60),
    "blue": (30, 70, 210),
    "yellow": (245, 225, 40),
    "orange": (245, 140, 30),
    "purple": (130, 50, 170),
    "pink": (245, 150, 190),
    "brown": (130, 80, 40),
    "cyan": (40, 200, 220),
}


class Colour(Struct, frozen=True):
    name: str
    hex: str
    share: float  # fraction of the image, 0..1


class ImageStats(Struct, frozen=True):
    width: int
    height: int
    colours: list[Colour]  # dominant first
    brightness: float  # mean luma, 0 (black) .. 1 (white)
    contrast: float  # luma standard deviation, scaled to 0..1

    @property
    def dominant(self) -> Colour:
        return self.colours[0]

    def size_text(self) -> str:
        return f"{self.width}x{self.height}"

    def brightness_text(self) -> str:
        if self.brightness < 0.25:
            return "dark"
        if self.brightness < 0.45:
            return "fairly dark"
        if self.brightness < 0.65:
            return "moderately bright"
        return "bright"


def is_image_data_uri(text: str) -> bool:
    return text.startswith("data:image/")


def decode_data_uri(uri: str, *, param: str) -> bytes:
    """The payload of a ``data:`` URI (base64 or percent-encoded)."""
    if not uri.startswith("data:"):
        raise InvalidRequest(f"{param}: expected a data: URI, got {uri[:40]!r}", param=param)
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise InvalidRequest(f"{param}: malformed data URI (no comma)", param=param)
    if header.endswith(";base64"):
        try:
            # Clients wrap long base64 lines; drop whitespace before strict decoding.
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{param}: data URI is not valid base64", param=param) from None
    return urllib.parse.unquote_to_bytes(payload)


def decode_image(data: bytes, *, param: str = "image") -> Image.Image:
    """Open and fully load ``data`` as an image, or raise InvalidRequest naming ``param``."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ...) on bad input
        raise InvalidRequest(f"{param} could not be decoded as an image ({type(exc).__name__})", param=param) from None
    return img


def decode_image_uri(uri: str, *, param: str) -> Image.Image:
    return decode_image(decode_data_uri(uri, param=param), param=param)


def colour_name(rgb: tuple[float, float, float]) -> str:
    r, g, b = rgb
    return min(
        NAMED_COLOURS,
        key=lambda n: (NAMED_COLOURS[n][0] - r) ** 2 + (NAMED_COLOURS[n][1] - g) ** 2 + (NAMED_COLOURS[n][2] - b) ** 2,
    )


def image_stats(img: Image.Image, *, max_colours: int = 3) -> ImageStats:
    """Size, dominant colours, brightness and contrast, from a 48x48 box-filtered copy."""
    small = np.asarray(img.convert("RGB").resize((48, 48), Image.Resampling.BOX), dtype=np.float64)
    pixels = small.reshape(-1, 3)
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    # Coarse 4x4x4 colour bins; the most populated bins are the dominant colours.
    bins = (pixels // 64).astype(np.int64)
    keys = bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2]
    counts = np.bincount(keys, minlength=64)
    shares: dict[str, list] = {}  # name -> [share, rgb sum weighted by count]
    for key in np.argsort(-counts, kind="stable")[: max_colours * 2]:
        share = float(counts[key] / len(keys))  # plain floats: msgspec cannot encode numpy's
        if share == 0 or (shares and share < 0.05):
            break
        mean = pixels[keys == key].mean(axis=0)
        entry = shares.setdefault(colour_name(tuple(mean)), [0.0, np.zeros(3)])
        entry[0] += share
        entry[1] += mean * share
    colours = [
        Colour(name, "#{:02x}{:02x}{:02x}".format(*(round(c) for c in rgb / share)), share)
        for name, (share, rgb) in sorted(shares.items(), key=lambda kv: -kv[1][0])
    ][:max_colours]
    return ImageStats(
        width=img.width,
        height=img.height,
        colours=colours,
        brightness=float(luma.mean() / 255),
        contrast=float(min(1.0, luma.std() / 128)),
    )


def summary(stats: ImageStats) -> str:
    """A short phrase for chat replies: "a 64x64 image, mostly red (#dc1e1e), dark"."""
    d = stats.dominant
    return f"a {stats.size_text()} image, mostly {d.name} ({d.hex}), {stats.brightness_text()}"
