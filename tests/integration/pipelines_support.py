"""Helpers for the seed-pipeline tests: a mock config for every role, images, running jobs."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
from PIL import Image, ImageDraw

from tests.integration.jobs_support import start, wait

# A model for each role the pipelines use; the vision model embeds too (CLIP-class), so texts and
# images share one embedding space, as with open_clip.
PIPELINES_CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "p-llm"
image = "p-image"
vision = "p-vision"
translation = "p-translate"

[[models]]
id = "p-llm"
provider = "mock"
capabilities = ["chat"]

[[models]]
id = "p-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "p-vision"
provider = "mock"
capabilities = ["vision", "embedding"]

[[models]]
id = "p-translate"
provider = "mock"
capabilities = ["translation"]

[[models]]
id = "p-broken-image"
provider = "mock"
capabilities = ["image"]
options = { fail_rate = 1.0, fail_message = "the mock GPU caught fire" }
"""


def picture(colour: tuple[int, int, int], size: int = 64, mark: int = 0) -> bytes:
    """A PNG mostly of ``colour``, with a small grey square at ``mark`` to tell copies apart."""
    img = Image.new("RGB", (size, size), colour)
    ImageDraw.Draw(img).rectangle((mark, mark, mark + 6, mark + 6), fill=(128, 128, 128))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def run(client: httpx.Client, pipeline: str, params: dict, timeout: float = 60) -> dict:
    """Start a job and wait for it to finish; returns the finished job."""
    job = start(client, params, pipeline)
    return wait(client, job["id"], timeout=timeout)


def succeeded(client: httpx.Client, pipeline: str, params: dict, timeout: float = 60) -> dict:
    job = run(client, pipeline, params, timeout)
    assert job["state"] == "succeeded", job["error"]
    return job


def fetch_image(client: httpx.Client, path: str, mode: str = "RGB") -> np.ndarray:
    r = client.get(f"/v1/files/{path}")
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert(mode)).astype(np.int16)
