"""Images coming in: data URIs, bare base64, or URLs of files this daemon serves."""

from __future__ import annotations

import base64
import binascii
import io
from urllib.parse import urlparse

from loom.sdk.errors import InvalidRequest

from .files import FileStore


def image_bytes(ref: str, files: FileStore, param: str = "image") -> bytes:
    """Return the raw bytes of an image reference, checked to decode as an image."""
    if ref.startswith("data:"):
        header, _, payload = ref.partition(",")
        if ";base64" not in header:
            raise InvalidRequest("Image data URIs must be base64-encoded", param=param)
        data = _b64(payload, param)
    elif ref.startswith(("http://", "https://", "/v1/files/")):
        # A URL of this daemon's files, absolute or as the answers give it (``/v1/files/...``).
        parsed = urlparse(ref)
        path = parsed.path
        marker = "/v1/files/"
        if marker not in path:
            raise InvalidRequest(
                "Remote image URLs are not fetched (Loom runs offline): send a data URI, "
                "or the URL of a file this daemon served",
                param=param,
            )
        data = files.read_named(path.split(marker, 1)[1], parsed.query)  # the caller's to read
    else:
        data = _b64(ref, param, hint=True)
    check_image(data, param)
    return data


def _b64(payload: str, param: str, hint: bool = False) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        said = " (an image is a data URI, bare base64, or a /v1/files/... URL of this daemon)" if hint else ""
        raise InvalidRequest(f"Image is not valid base64{said}", param=param) from None


def check_image(data: bytes, param: str = "image") -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            return img.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidRequest(f"Image could not be decoded: {e}", param=param) from None
