"""Images coming into a pipeline: a data URI, or a file this daemon serves (its URL or path).

Checked when the job is submitted (a bad image is a 400, not a failed job): a data URI must be
base64 and decode as an image; a URL must point at ``/v1/files/`` (Loom runs offline and fetches
nothing else); a bare path must lie under ``output/`` or ``images/``. The bytes are read in the
job, through ``ctx.read_artifact``.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any
from urllib.parse import urlparse

from ..errors import InvalidRequest
from ..pipelines import PipelineContext

FILES = "/v1/files/"
PUBLIC = ("output/", "images/")
NOT_READABLE = (
    "image must be a data URI (data:image/png;base64,...) or the URL or path of a file this "
    "daemon serves (/v1/files/output/...); remote URLs are not fetched"
)


def decode_data_uri(ref: str) -> bytes:
    header, sep, payload = ref[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise ValueError("an image data URI must be base64: data:image/png;base64,...")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the image data URI is not valid base64") from None


def check_image(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            return img.size
    except Exception as e:  # Pillow raises many types on bad input
        raise ValueError(f"the image could not be decoded ({type(e).__name__})") from None


def file_path(ref: str) -> str | None:
    """The data-dir-relative path a URL or path names, or None."""
    if ref.startswith(("http://", "https://")):
        path = urlparse(ref).path
        return path.split(FILES, 1)[1] if FILES in path else None
    if ref.startswith(FILES):
        return urlparse(ref).path[len(FILES) :]  # a signed URL's ?exp=&sig= is not part of the path
    ref = ref.lstrip("/")
    return ref if ref.startswith(PUBLIC) and ".." not in ref.split("/") else None


def check_ref(ref: str) -> None:
    """Raise ValueError (a 400 at submit) unless ``ref`` is an image Loom can read."""
    if ref.startswith("data:"):
        check_image(decode_data_uri(ref))
    elif file_path(ref) is None:
        raise ValueError(NOT_READABLE)


async def load(ctx: PipelineContext, ref: str) -> bytes:
    if ref.startswith("data:"):
        return decode_data_uri(ref)
    path = file_path(ref)
    if path is None:
        raise ValueError(NOT_READABLE)
    return ctx.read_artifact(path)


def suffix(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[8:12] == b"WEBP":
        return ".webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return ".png"


def data_uri(data: bytes) -> str:
    kind = {".jpg": "jpeg", ".webp": "webp", ".gif": "gif"}.get(suffix(data), "png")
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def url(path: str | None) -> str | None:
    return f"{FILES}{path}" if path else None


async def save_input(ctx: PipelineContext, ref: str, key: str = "input") -> dict[str, Any]:
    """Copy the input image into the job's folder (a durable step); returns its path."""

    async def call() -> dict[str, Any]:
        data = await load(ctx, ref)
        try:
            width, height = check_image(data)
        except ValueError as e:
            raise InvalidRequest(str(e), param="image") from None
        name = f"input{suffix(data)}"
        return {"path": ctx.save_artifact(name, data, {"kind": "input"}), "width": width, "height": height}

    return await ctx.step(key, call)
