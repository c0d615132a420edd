"""/v1/images/edits and /v1/images/variations: image-to-image from a multipart form, as OpenAI.

Fields as in OpenAI's API: ``image`` (or ``image[]``), ``mask``, ``prompt``, ``model``, ``n``,
``size``, ``response_format``, ``user``, and on edits ``stream`` and ``partial_images`` (server-sent
``image_edit.*`` events, see ``image_stream``); Loom's extras: ``seed``, ``strength``, ``steps``,
``negative_prompt``, ``guidance_scale``. Other fields are refused with a 400 naming them.

Masks follow OpenAI: transparent pixels (alpha 0) mark where to paint; a mask without an alpha
channel is read as black and white, white marking where to paint. With no mask, an image's own
transparent pixels are the mask. Both reach the provider as ``ImageJob.mask`` (white = repaint).
"""

from __future__ import annotations

import io
import re
from typing import Annotated, Any, Literal, NamedTuple, cast, get_args

from litestar import Request, Response, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from loom.sdk.errors import InvalidRequest, UnsupportedParameter
from loom.sdk.image_events import ImageStreamEvent
from loom.sdk.previews import MAX_PARTIAL_IMAGES
from loom.sdk.protocols import ImageJob
from loom.sdk.types import (
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_STEPS,
    Capability,
    GuidanceScale,
    ImageCount,
    ImagesResponse,
    PartialImages,
    Size,
    Steps,
    Strength,
)
from msgspec import Meta, Struct

from ..config import Routes
from ..files import FileStore
from ..http.body import BodyReader
from ..media import check_image, image_bytes
from ..models import ModelRegistry
from ..routing import ModelRouter
from ..storage.service import Storage
from .image_stream import check_stream, stream_response
from .images import base_url, image_folder, parse_size, render
from .openapi import BODY_ERRORS, MODEL_ERRORS, STORAGE_ERRORS, doc
from .respond import PROVENANCE, json_response, served_by

COMMON = {
    "image",
    "model",
    "n",
    "size",
    "response_format",
    "user",
    "seed",
    "strength",
    "steps",
    "negative_prompt",
    "guidance_scale",
}
EDIT_FIELDS = COMMON | {"prompt", "mask", "stream", "partial_images"}
VARIATION_FIELDS = COMMON
_SIZE = re.compile(get_args(Size)[1].pattern)  # Annotated[str, Meta(pattern=...)]
#: size=auto: the input's size, the longer side at most this, each side a multiple of 16 (what
#: every diffusion pipeline can make).
AUTO_MAX_SIDE = 1024
AUTO_STEP = 16


class VariationForm(Struct, kw_only=True):
    """The fields of ``POST /v1/images/variations`` (``image`` may also be sent as ``image[]``)."""

    image: bytes
    model: str | None = None
    n: ImageCount = 1
    size: Size = "auto"
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = None
    seed: int | None = None
    strength: Strength | None = None
    steps: Steps | None = None
    negative_prompt: str | None = None
    guidance_scale: GuidanceScale | None = None


class EditForm(VariationForm, kw_only=True):
    """The fields of ``POST /v1/images/edits``: a variation's, a ``prompt`` and a ``mask``."""

    prompt: Annotated[str, Meta(min_length=1, pattern=r"\S")]
    mask: bytes | None = None
    #: Answer with server-sent ``image_edit.*`` events: ``partial_images`` previews, then the image.
    stream: bool = False
    partial_images: PartialImages = 0


@post(
    "/images/edits",
    status_code=200,
    operation_class=doc(
        "Edit an image",
        form=EditForm,
        returns=ImagesResponse,
        events=ImageStreamEvent,
        errors=BODY_ERRORS + MODEL_ERRORS + STORAGE_ERRORS,
        headers=PROVENANCE,
    ),
)
async def edits(
    request: Request,
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    files: NamedDependency[FileStore],
    storage: NamedDependency[Storage],
) -> Response:
    form = await read_form(request, bodies, files, EDIT_FIELDS)
    stream = form.flag("stream")
    if stream:
        check_stream(form.number("n", int, 1, MAX_IMAGES) or 1, form.text("response_format") or "b64_json")
    prompt = form.text("prompt")
    if not prompt or not prompt.strip():
        raise InvalidRequest("prompt is required: say what the edited image should show", param="prompt")
    image = await form.one_image("image", required=True)
    masks = await form.images("mask")
    if len(masks) > 1:
        raise InvalidRequest("send at most one mask", param="mask")
    width, height = check_image(image, "image")
    mask = repaint_mask(masks[0], (width, height)) if masks else mask_from_alpha(image)
    return await image_to_image(
        request, Models(registry, router, routes), files, storage, form, prompt, image, mask, stream=stream
    )


@post(
    "/images/variations",
    status_code=200,
    operation_class=doc(
        "Make variations of an image",
        form=VariationForm,
        returns=ImagesResponse,
        errors=BODY_ERRORS + MODEL_ERRORS + STORAGE_ERRORS,
        headers=PROVENANCE,
    ),
)
async def variations(
    request: Request,
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    files: NamedDependency[FileStore],
    storage: NamedDependency[Storage],
) -> Response:
    form = await read_form(request, bodies, files, VARIATION_FIELDS)
    image = await form.one_image("image", required=True)
    # A variation is image-to-image with no prompt: the picture itself is what is kept.
    return await image_to_image(request, Models(registry, router, routes), files, storage, form, "", image, None)


class Models(NamedTuple):
    registry: ModelRegistry
    router: ModelRouter
    routes: Routes


async def image_to_image(
    request: Request,
    models: Models,
    files: FileStore,
    storage: Storage,
    form: Form,
    prompt: str,
    image: bytes,
    mask: bytes | None,
    *,
    stream: bool = False,
) -> Response:
    model = form.text("model") or models.routes.image
    if not model:
        raise InvalidRequest("model is required (no image model is routed by default)", param="model")
    entry = models.registry.for_capability(model, Capability.IMAGE)
    size = form.text("size")
    size = "auto" if size is None else size  # an empty size is not one (the document's pattern)
    if not _SIZE.fullmatch(size):  # fullmatch: `$` alone lets a trailing newline through
        raise InvalidRequest(f"size must be 'auto' or WIDTHxHEIGHT, got {size!r}", param="size")
    width, height = auto_size(check_image(image, "image")) if size == "auto" else parse_size(size, entry)
    # Checked without stream too: the document allows 0 to 3 either way.
    partial_images = form.number("partial_images", int, 0, MAX_PARTIAL_IMAGES) or 0
    response_format = form.text("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise InvalidRequest(
            f"response_format must be b64_json or url, got {response_format!r}", param="response_format"
        )
    strength = form.number("strength", float, 0.0, 1.0)
    if strength is not None and strength <= 0.0:
        raise InvalidRequest("strength must be above 0 (and at most 1)", param="strength")
    job = ImageJob(
        prompt=prompt,
        width=width,
        height=height,
        n=form.number("n", int, 1, MAX_IMAGES) or 1,
        seed=form.number("seed", int),
        negative_prompt=form.text("negative_prompt"),
        steps=form.number("steps", int, 1, MAX_STEPS),
        guidance_scale=form.number("guidance_scale", float, 0.0, MAX_GUIDANCE),
        init_image=image,
        mask=mask,
        partial_images=partial_images if stream else 0,
        **({} if strength is None else {"strength": strength}),  # else ImageJob's default
    )
    if stream:
        return await stream_response(models.router, model, job, edit=True)
    folder = image_folder(request)
    entry, body = await render(models.router, files, storage, model, job, response_format, base_url(request), folder)
    return json_response(body, headers=served_by(entry))


# --- the form -------------------------------------------------------------------------------------


class Form:
    """A multipart form's fields by name (``image[]`` counts as ``image``), each a list."""

    def __init__(self, files: FileStore, fields: dict[str, list[Any]]) -> None:
        self.files, self.fields = files, fields

    def text(self, name: str) -> str | None:
        values = self.fields.get(name, [])
        if len(values) > 1:
            raise InvalidRequest(f"{name} was sent {len(values)} times", param=name)
        if not values:
            return None
        if isinstance(values[0], UploadFile):
            raise InvalidRequest(f"{name} must be a text field, not a file", param=name)
        return str(values[0])

    def flag(self, name: str) -> bool:
        """A boolean field as the ``openai`` package sends one (``true``/``false``; 1/0 too)."""
        text = self.text(name)
        if text is None or text == "":
            return False
        value = text.strip().lower()
        if value not in ("true", "false", "1", "0"):
            raise InvalidRequest(f"{name} must be true or false, got {text!r}", param=name)
        return value in ("true", "1")

    def number(self, name: str, kind: type, low: float | None = None, high: float | None = None):
        text = self.text(name)
        if text is None or text == "":
            return None
        try:
            value = kind(text)
        except ValueError:
            raise InvalidRequest(
                f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}", param=name
            ) from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidRequest(f"{name} must be in {low:g}..{high:g}, got {text}", param=name)
        return value

    async def images(self, name: str) -> list[bytes]:
        """Files (or data URIs / base64 / served-file URLs in text fields), checked to decode."""
        out = []
        for value in self.fields.get(name, []):
            if isinstance(value, UploadFile):
                data = await value.read()
                check_image(data, name)
            else:
                data = image_bytes(str(value), self.files, param=name)
            out.append(data)
        return out

    async def one_image(self, name: str, *, required: bool) -> bytes:
        found = await self.images(name)
        if not found and required:
            raise InvalidRequest(f"{name} is required: send the image as a file", param=name)
        if len(found) > 1:
            raise UnsupportedParameter(f"Loom edits one image per request; {len(found)} were sent", param=name)
        return found[0]


async def read_form(request: Request, bodies: BodyReader, files: FileStore, allowed: set[str]) -> Form:
    bodies.check_declared(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("send the image as multipart/form-data, as the OpenAI API does")
    form = await request.form()
    fields: dict[str, list[Any]] = {}
    for key, value in form.multi_items():
        name = key[:-2] if key.endswith("[]") else key
        if name not in allowed:
            raise UnsupportedParameter(f"Unsupported parameter: '{name}' is not supported by Loom", param=name)
        fields.setdefault(name, []).append(value)
    return Form(files, fields)


# --- sizes and masks ------------------------------------------------------------------------------


def auto_size(size: tuple[int, int]) -> tuple[int, int]:
    """The input image's size, scaled down to fit AUTO_MAX_SIDE, rounded down to AUTO_STEP."""
    width, height = size
    scale = min(1.0, AUTO_MAX_SIDE / max(width, height))

    def fit(side: int) -> int:
        return max(AUTO_STEP, int(side * scale) // AUTO_STEP * AUTO_STEP)

    return fit(width), fit(height)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def repaint_mask(data: bytes, size: tuple[int, int]) -> bytes:
    """An OpenAI mask as an L-mode PNG, white where the image is to be painted."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if img.size != size:
        raise InvalidRequest(
            f"mask is {img.width}x{img.height} but image is {size[0]}x{size[1]}; they must match",
            param="mask",
        )
    if "A" in img.getbands() or "transparency" in img.info:
        alpha = img.convert("RGBA").getchannel("A")
        return _png(alpha.point(lambda a: 255 if a < 128 else 0))
    return _png(img.convert("L").point(lambda v: 255 if v >= 128 else 0))


def mask_from_alpha(data: bytes) -> bytes | None:
    """The image's own transparent pixels as a mask, or None when it has none."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if "A" not in img.getbands() and "transparency" not in img.info:
        return None
    alpha = img.convert("RGBA").getchannel("A")
    lowest, _ = cast("tuple[float, float]", alpha.getextrema())  # one band: (min, max)
    if lowest >= 128:
        return None  # fully opaque: a plain image-to-image edit
    return _png(alpha.point(lambda a: 255 if a < 128 else 0))
