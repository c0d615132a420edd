"""The server-sent events of a streamed image request, in OpenAI's shapes.

``POST /v1/images/generations`` with ``stream: true`` answers ``image_generation.partial_image``
events (one per preview the provider sent, at most ``partial_images``), then one
``image_generation.completed``; ``POST /v1/images/edits`` the same as ``image_edit.*``. Each is
an SSE message whose ``event`` is its ``type`` and whose ``data`` is the struct as JSON, as
OpenAI's ``ImageGenStreamEvent`` / ``ImageEditStreamEvent`` schemas have them.

``size`` is the image's own ``WIDTHxHEIGHT`` (OpenAI lists the three sizes of its first GPT image
model there; its later models, like Loom, make others). Loom takes no ``quality``, ``background``
or ``output_format``: the events say ``auto``, ``opaque`` (diffusion pictures have no
transparency) and ``png``, which is what they are. Loom counts no tokens for an image:
``usage`` is zeros.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct, field


class ImageInputTokens(Struct, kw_only=True):
    text_tokens: int = 0
    image_tokens: int = 0


class ImagesUsage(Struct, kw_only=True):
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: ImageInputTokens = field(default_factory=ImageInputTokens)


class ImageStreamEvent(Struct, kw_only=True):
    """What every event of a streamed image answer carries. Each event also has a ``type`` (its
    SSE ``event`` name too): ``image_generation.partial_image`` / ``image_edit.partial_image``
    (with ``partial_image_index``, 0-based) for each preview, then ``image_generation.completed``
    / ``image_edit.completed`` (with ``usage``) for the image, as OpenAI's ``ImageGenStreamEvent``
    and ``ImageEditStreamEvent``."""

    b64_json: str
    created_at: int
    size: str
    quality: Literal["low", "medium", "high", "auto"] = "auto"
    background: Literal["transparent", "opaque", "auto"] = "opaque"
    output_format: Literal["png", "webp", "jpeg"] = "png"


class ImageGenPartialImageEvent(ImageStreamEvent, kw_only=True, tag_field="type", tag="image_generation.partial_image"):
    partial_image_index: int


class ImageGenCompletedEvent(ImageStreamEvent, kw_only=True, tag_field="type", tag="image_generation.completed"):
    usage: ImagesUsage


class ImageEditPartialImageEvent(ImageStreamEvent, kw_only=True, tag_field="type", tag="image_edit.partial_image"):
    partial_image_index: int


class ImageEditCompletedEvent(ImageStreamEvent, kw_only=True, tag_field="type", tag="image_edit.completed"):
    usage: ImagesUsage


#: The events of each route: (partial image, completed).
GENERATION_EVENTS = (ImageGenPartialImageEvent, ImageGenCompletedEvent)
EDIT_EVENTS = (ImageEditPartialImageEvent, ImageEditCompletedEvent)
