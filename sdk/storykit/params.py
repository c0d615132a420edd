"""Parameter types shared by the story pipelines (decoded strictly from the request body)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from ..types import Steps

Prompt = Annotated[str, Meta(min_length=1, max_length=4000, description="what the story is about")]
Audience = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        description="children, young adult, adult, or who the story is for in your own words",
    ),
]
TargetWords = Annotated[int, Meta(ge=20, le=3000, description="about how many words the story should have")]
MaxTokens = Annotated[int, Meta(ge=16, le=8192, description="hard token limit; default from target_words")]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Seed = Annotated[int, Meta(ge=0, le=2**31 - 1)]
#: A side of an image a pipeline makes (narrower than the API's MIN_SIDE..MAX_SIDE: pipelines
#: chain models, and every diffusion model can make these).
Side = Annotated[int, Meta(ge=64, le=2048, multiple_of=8, description="pixels, a multiple of 8")]
TopK = Annotated[int, Meta(ge=0, le=20, description="similar past items to retrieve from each index")]
Detail = Literal["brief", "normal", "detailed"]
ImageRef = Annotated[
    str,
    Meta(
        min_length=1,
        description="a data URI (data:image/png;base64,...) or the URL or path of a file Loom serves",
    ),
]

__all__ = [
    "Audience",
    "Detail",
    "ImageRef",
    "MaxTokens",
    "Prompt",
    "Seed",
    "Side",
    "Steps",
    "TargetWords",
    "Temperature",
    "TopK",
]
