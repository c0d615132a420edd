"""The prompts behind the capabilities a chat model serves by being asked: describing an image,
rating one, translating. Pure functions: messages in the OpenAI shape, answers parsed back."""

from __future__ import annotations

import base64
import json
import re

from loom.sdk.errors import ProviderError
from loom.sdk.protocols import VisionScores

DETAIL = {
    "brief": "Describe this image in one sentence.",
    "normal": "Describe this image in two or three sentences.",
    "detailed": (
        "Describe this image in detail: the subjects, the setting, the colours, the lighting, "
        "the style and the composition."
    ),
}

SCORE_SYSTEM = (
    "You rate images. Answer with a JSON object and nothing else: "
    '{"clip": <0..1, how well the image matches the text>, '
    '"aesthetic": <0..10, how good the image looks on its own>}.'
)

SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "clip": {"type": "number", "minimum": 0, "maximum": 1},
        "aesthetic": {"type": "number", "minimum": 0, "maximum": 10},
    },
    "required": ["clip", "aesthetic"],
    "additionalProperties": False,
}


def mime_of(image: bytes) -> str:
    if image.startswith(b"\x89PNG"):
        return "image/png"
    if image.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    if image[:3] == b"GIF":
        return "image/gif"
    return "application/octet-stream"


def data_uri(image: bytes) -> str:
    return f"data:{mime_of(image)};base64,{base64.b64encode(image).decode()}"


def describe_messages(image: bytes, prompt: str | None, detail: str) -> list[dict]:
    text = DETAIL.get(detail, DETAIL["normal"])
    if prompt:
        text = f"{prompt.strip()}\n\n{text}"
    return [_with_image(text, image)]


def score_messages(image: bytes, text: str) -> list[dict]:
    return [
        {"role": "system", "content": SCORE_SYSTEM},
        _with_image(f"The text: {text!r}. Rate the image.", image),
    ]


def score_format(kind: str) -> dict:
    if kind == "json_schema":
        spec = {"name": "image_rating", "schema": SCORE_SCHEMA, "strict": True}
        return {"type": "json_schema", "json_schema": spec}
    return {"type": "json_object"}


def parse_scores(answer: str, model: str) -> VisionScores:
    """The ``{clip, aesthetic}`` object of an answer (tolerating a fenced or chatty one)."""
    match = re.search(r"\{.*\}", answer, re.S)
    try:
        data = json.loads(match.group(0) if match else answer)
        clip, aesthetic = float(data["clip"]), float(data["aesthetic"])
    except (ValueError, KeyError, TypeError, AttributeError):
        snippet = " ".join(answer.split())[:120]
        raise ProviderError(f"model '{model}' did not answer with a JSON rating: {snippet!r}") from None
    return VisionScores(clip=min(1.0, max(0.0, clip)), aesthetic=min(10.0, max(0.0, aesthetic)))


def translate_messages(text: str, source: str, target: str) -> list[dict]:
    return [
        {
            "role": "system",
            "content": (
                f"You are a translator. Translate the user's text from the language with code "
                f"'{source}' to the language with code '{target}'. Keep the meaning, tone and "
                "formatting. Answer with the translation only."
            ),
        },
        {"role": "user", "content": text},
    ]


def _with_image(text: str, image: bytes) -> dict:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": data_uri(image)}},
        ],
    }
