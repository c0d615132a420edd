"""Wire types: the OpenAI-compatible request and response bodies, and Loom's own.

Requests are decoded strictly (``forbid_unknown_fields``): a field Loom does not support is refused
with a 400 naming it rather than silently dropped. Responses are encoded with msgspec as they are.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct, field

from .errors import InvalidRequest


class Capability(str, enum.Enum):
    """What a model can do; routes pick models by capability."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    IMAGE = "image"
    VISION = "vision"
    TRANSLATION = "translation"


class Request(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of request bodies: unknown fields are an error."""


class Response(Struct, omit_defaults=False):
    """Base of response bodies."""


# --- chat -------------------------------------------------------------------------------------


class ImageURL(Struct, forbid_unknown_fields=True):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class TextPart(Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    text: str


class ImagePart(Struct, tag_field="type", tag="image_url", forbid_unknown_fields=True):
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class ChatMessage(Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text parts joined; images are left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    def images(self) -> list[str]:
        """The URLs (usually data URIs) of the message's image parts."""
        if not isinstance(self.content, list):
            return []
        return [p.image_url.url for p in self.content if isinstance(p, ImagePart)]


class StreamOptions(Struct, forbid_unknown_fields=True):
    include_usage: bool = False


class TextFormat(Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    pass


class JSONObjectFormat(Struct, tag_field="type", tag="json_object", forbid_unknown_fields=True):
    pass


class JSONSchemaSpec(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    schema: dict = field(default_factory=dict)
    description: str | None = None
    strict: bool | None = None


class JSONSchemaFormat(Struct, tag_field="type", tag="json_schema", forbid_unknown_fields=True):
    json_schema: JSONSchemaSpec


ResponseFormat = TextFormat | JSONObjectFormat | JSONSchemaFormat

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
MaxTokens = Annotated[int, Meta(ge=1)]
N = Annotated[int, Meta(ge=1, le=16)]


class ChatCompletionRequest(Request):
    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    n: N = 1
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def has_images(self) -> bool:
        return any(m.images() for m in self.messages)


class Usage(Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(Struct):
    role: str = "assistant"
    content: str | None = ""


class ChatChoice(Struct):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(Response):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"
    system_fingerprint: str | None = None


class ChunkDelta(Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(Struct):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(Response):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- completions ------------------------------------------------------------------------------


class CompletionRequest(Request):
    model: str
    prompt: str | Annotated[list[str], Meta(min_length=1)]
    max_tokens: MaxTokens = 16
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: N = 1
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    echo: bool = False
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    user: str | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionChoice(Struct):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(Response):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: str = "text_completion"
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- embeddings -------------------------------------------------------------------------------


class EmbeddingRequest(Request):
    model: str
    # Strings; for models that embed images (CLIP) an item may be an image data URI or URL.
    input: str | Annotated[list[str], Meta(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingList(Response):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: str = "list"


# --- images -----------------------------------------------------------------------------------

# The bounds of image requests, in one place: the image routes (JSON and multipart), the pipelines'
# parameters and the providers' options all use these.
#: Pixels per side of an image a request may ask for.
MIN_SIDE, MAX_SIDE = 16, 4096
#: Images one request may ask for.
MAX_IMAGES = 10
#: Denoising steps.
MAX_STEPS = 200
#: Classifier-free guidance scale.
MAX_GUIDANCE = 50.0

#: "auto" or WIDTHxHEIGHT; :func:`parse_size` checks the sides.
Size = Annotated[str, Meta(pattern=r"^(auto|\d{2,4}x\d{2,4})$")]
ImageCount = Annotated[int, Meta(ge=1, le=MAX_IMAGES)]
Steps = Annotated[int, Meta(ge=1, le=MAX_STEPS)]
GuidanceScale = Annotated[float, Meta(ge=0.0, le=MAX_GUIDANCE)]
#: How much image-to-image changes the input: above 0, at most 1.
Strength = Annotated[float, Meta(gt=0.0, le=1.0)]


def parse_size(size: str) -> tuple[int, int] | None:
    """``"WIDTHxHEIGHT"`` as (width, height), None for ``"auto"``; a side out of
    ``MIN_SIDE..MAX_SIDE`` raises InvalidRequest (param ``size``)."""
    if size == "auto":
        return None
    w, _, h = size.partition("x")
    width, height = int(w), int(h)
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"size {size} is out of range ({MIN_SIDE}..{MAX_SIDE} per side)", param="size")
    return width, height


class ImageGenerationRequest(Request):
    model: str
    prompt: Annotated[str, Meta(min_length=1, max_length=32000)]
    n: ImageCount = 1
    size: Size = "auto"
    response_format: Literal["b64_json", "url"] = "b64_json"
    # Loom extensions (pass with extra_body): what diffusion users expect to control.
    seed: int | None = None
    negative_prompt: str | None = None
    steps: Steps | None = None
    guidance_scale: GuidanceScale | None = None
    user: str | None = None


class ImageData(Struct, omit_defaults=True):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(Response):
    created: int
    data: list[ImageData]


# --- Loom routes without an OpenAI shape ------------------------------------------------------


class TranslationRequest(Request):
    model: str
    text: str | Annotated[list[str], Meta(min_length=1)]
    source: str
    target: str

    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)


class TranslationResponse(Response):
    model: str
    source: str
    target: str
    translations: list[str]
    object: str = "translation"


class DescribeRequest(Request):
    model: str
    image: str  # data URI, URL served by Loom, or bare base64
    prompt: str | None = None
    detail: Literal["brief", "normal", "detailed"] = "normal"
    max_tokens: MaxTokens | None = None


class DescribeResponse(Response):
    model: str
    description: str
    object: str = "vision.description"


class ScoreRequest(Request):
    model: str
    image: str
    text: str
    alpha: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.7


class ScoreResponse(Response):
    model: str
    clip: float
    aesthetic: float
    combined: float
    alpha: float
    object: str = "vision.score"


# --- models -----------------------------------------------------------------------------------


class ModelCard(Response):
    id: str
    created: int
    owned_by: str
    capabilities: list[str]
    provider: str
    aliases: list[str] = field(default_factory=list)
    object: str = "model"


class ModelList(Response):
    data: list[ModelCard]
    object: str = "list"


class ErrorBody(Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(Struct):
    error: ErrorBody


def decode(data: bytes, type_):
    """Decode JSON ``data`` strictly as ``type_`` (msgspec's errors keep the field path)."""
    return msgspec.json.decode(data, type=type_)
