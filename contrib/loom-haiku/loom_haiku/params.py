"""The haiku pipeline's parameters: the body of ``POST /v1/pipelines/haiku``, decoded strictly."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

Side = Annotated[int, Meta(ge=16, le=2048, multiple_of=8)]


class HaikuParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    #: What the haiku is about.
    topic: Annotated[str, Meta(min_length=1, max_length=200)]
    #: The chat model; default: ``[routes].chat``, else the first model that chats.
    chat_model: str | None = None
    #: The image model; default: ``[routes].image``, else the first model that draws.
    image_model: str | None = None
    illustrate: bool = True
    #: Tries at a three-line answer; each retry tells the model what was wrong.
    attempts: Annotated[int, Meta(ge=1, le=5)] = 3
    #: Seeds the chat (plus the attempt number) and the image; None = fresh each run.
    seed: int | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] = 0.8
    width: Side = 512
    height: Side = 512
