"""Images in and out of the torch providers: bytes -> RGB PIL image, PIL image -> PNG bytes."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from .. import InvalidRequest


def open_image(data: bytes, *, param: str = "image", mode: str = "RGB") -> Any:
    """Decode ``data`` fully, converted to ``mode``; InvalidRequest naming ``param`` if it does not decode."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad input
        reason = f"{type(e).__name__}: {e}"
        raise InvalidRequest(f"{param} could not be decoded as an image ({reason})", param=param) from None
    return img.convert(mode)


def is_image_uri(text: str) -> bool:
    return text.startswith("data:image/")


def image_from_uri(uri: str, *, param: str) -> Any:
    """An ``data:image/...;base64,`` input (an embedding input, a chat image part) as an RGB image."""
    header, sep, payload = uri.partition(",")
    if not sep or ";base64" not in header:
        raise InvalidRequest(f"{param}: image data URIs must be base64-encoded", param=param)
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param}: image data URI is not valid base64", param=param) from None
    return open_image(data, param=param)


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
