"""Wire types: the OpenAI-compatible request and response bodies, and Loom's own.

Requests are decoded strictly (``forbid_unknown_fields``): a field Loom does not support is refused
with a 400 naming it rather than silently dropped. Responses are encoded with msgspec as they are.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from .errors import InvalidRequest
from .previews import MAX_PARTIAL_IMAGES


class Capability(str, enum.Enum):
    """What a model can do; routes pick models by capability."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    IMAGE = "image"
    VISION = "vision"
    TRANSLATION = "translation"
    RERANK = "rerank"


class Request(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of request bodies: unknown fields are an error."""


#: OpenAI's service tiers, which map onto Loom's scheduling priorities.
ServiceTier = Literal["auto", "default", "flex", "priority"]


class Response(Struct, omit_defaults=False):
    """Base of response bodies."""


# --- chat: content parts and messages --------------------------------------------------------


class ImageURL(Struct, forbid_unknown_fields=True):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class TextPart(Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    text: str


class ImagePart(Struct, tag_field="type", tag="image_url", forbid_unknown_fields=True):
    image_url: ImageURL


class RefusalPart(Struct, tag_field="type", tag="refusal", forbid_unknown_fields=True):
    refusal: str


ContentPart = TextPart | ImagePart
AssistantPart = TextPart | RefusalPart


class FunctionCall(Struct, forbid_unknown_fields=True):
    """The function a model called and its arguments, a JSON text (as generated: may not parse)."""

    name: str
    arguments: str


class ToolCall(Struct, tag_field="type", tag="function", forbid_unknown_fields=True):
    """One call in an assistant message's ``tool_calls`` (requests and answers alike)."""

    id: str
    function: FunctionCall


class Message(Struct, tag_field="role", forbid_unknown_fields=True, omit_defaults=True):
    """Base of the chat messages: a tagged union on ``role`` (:data:`ChatMessage`)."""

    role: ClassVar[str]

    def text(self) -> str:
        """The message's text parts joined; images (and refusals) are left out."""
        content = getattr(self, "content", None)
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "\n".join(p.text for p in content if isinstance(p, TextPart))

    def images(self) -> list[str]:
        """The URLs (data URIs, or http(s) URLs before the daemon fetched them) of image parts."""
        content = getattr(self, "content", None)
        if not isinstance(content, list):
            return []
        return [p.image_url.url for p in content if isinstance(p, ImagePart)]


class SystemMessage(Message, tag="system"):
    content: str | list[TextPart]
    name: str | None = None
    role = "system"


class DeveloperMessage(Message, tag="developer"):
    """OpenAI's newer name for the system role; chat templates see it as "system"."""

    content: str | list[TextPart]
    name: str | None = None
    role = "developer"


class UserMessage(Message, tag="user"):
    content: str | list[ContentPart]
    name: str | None = None
    role = "user"


class AssistantMessage(Message, tag="assistant"):
    """An earlier answer in the conversation; ``content`` may be null when it called tools."""

    content: str | list[AssistantPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    role = "assistant"


class ToolMessage(Message, tag="tool"):
    """The result of a tool call, answering the call with id ``tool_call_id``."""

    content: str | list[TextPart]
    tool_call_id: str
    role = "tool"


ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage

_ROLES: dict[str, type[ChatMessage]] = {
    "system": SystemMessage,
    "developer": DeveloperMessage,
    "user": UserMessage,
    "assistant": AssistantMessage,
    "tool": ToolMessage,
}


def message(role: str, content: Any = None, **fields: Any) -> ChatMessage:
    """A chat message of ``role``: ``message("user", "Hi")``."""
    try:
        cls = _ROLES[role]
    except KeyError:
        raise ValueError(f"unknown chat role {role!r}; one of {', '.join(_ROLES)}") from None
    if content is not None:
        fields["content"] = content
    return cls(**fields)


# --- chat: tools --------------------------------------------------------------------------------

#: OpenAI's rule for function names.
FunctionName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionDefinition(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: FunctionName
    description: str | None = None
    #: A JSON schema of an object; None means "no arguments".
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def schema(self) -> dict[str, Any]:
        """The parameters' schema; a function without one takes an empty object."""
        return self.parameters if self.parameters is not None else {"type": "object", "properties": {}}


class FunctionTool(Struct, tag_field="type", tag="function", forbid_unknown_fields=True):
    function: FunctionDefinition


class NamedFunction(Struct, forbid_unknown_fields=True):
    name: str


class NamedToolChoice(Struct, tag_field="type", tag="function", forbid_unknown_fields=True):
    """``tool_choice`` naming one function: the model must call it."""

    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class PredictionContent(Struct, tag_field="type", tag="content", forbid_unknown_fields=True):
    content: str | list[TextPart]


# --- chat: request ------------------------------------------------------------------------------


class StreamOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    include_usage: bool = False
    include_obfuscation: bool | None = None


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
#: OpenAI's metadata: at most 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]], Meta(max_length=16)
]


class ChatCompletionRequest(Request):
    """``POST /v1/chat/completions``. Which optional parameters a model honours, and what happens
    to the others, is the policy table in :mod:`loom.sdk.params`."""

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
    tools: Annotated[list[FunctionTool], Meta(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    #: Token id (an integer, as a string) -> bias.
    logit_bias: (
        dict[Annotated[str, Meta(pattern=r"^-?[0-9]+$")], Annotated[float, Meta(ge=-100.0, le=100.0)]] | None
    ) = None
    # Sampling knobs of local runtimes (llama.cpp's server, vLLM and Ollama take them too).
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Meta(gt=0.0, le=10.0)] | None = None
    # Load tools' extras (vLLM and llama.cpp's server take them): no end before this many tokens,
    # or none before the limit.
    min_tokens: Annotated[int, Meta(ge=0)] | None = None
    ignore_eos: bool | None = None
    # Bookkeeping: never changes the output.
    user: str | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    #: The scheduler priority the request runs at (``loom.daemon.service_tier``).
    service_tier: ServiceTier | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    # Would change the output; served only where a provider can (a remote OpenAI service).
    reasoning_effort: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prediction: PredictionContent | None = None
    modalities: list[Literal["text", "audio"]] | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def last_user_text(self) -> str:
        """The text of the last user message ("" when there is none): what most providers answer.
        ``messages[-1]`` may be a tool result or an assistant turn."""
        for message in reversed(self.messages):
            if isinstance(message, UserMessage):
                return message.text()
        return ""

    def has_images(self) -> bool:
        return any(m.images() for m in self.messages)

    def tool_mode(self) -> str:
        """ "none" (no tools or tool_choice none), "auto", "required" or "named"."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return self.tool_choice or "auto"

    def callable_tools(self) -> list[FunctionDefinition]:
        """The functions the model may call now: all tools, the named one, or none."""
        mode = self.tool_mode()
        if mode == "none":
            return []
        functions = [t.function for t in self.tools or []]
        if isinstance(self.tool_choice, NamedToolChoice):
            return [f for f in functions if f.name == self.tool_choice.function.name]
        return functions

    def parallel_calls(self) -> bool:
        """Whether several calls may come in one answer (OpenAI's default: yes)."""
        return self.parallel_tool_calls is not False


# --- chat: answers ------------------------------------------------------------------------------


class PromptTokensDetails(Struct):
    #: Prompt tokens a prompt cache served (not evaluated again).
    cached_tokens: int = 0


class Usage(Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: Sent when the serving provider reports what its prompt cache served (left out otherwise).
    prompt_tokens_details: PromptTokensDetails | UnsetType = UNSET


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(Struct):
    """One generated token's log probability and the most likely alternatives (OpenAI's shape)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = field(default_factory=list)


class ChoiceLogprobs(Struct):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class ChoiceMessage(Struct, kw_only=True, omit_defaults=True):
    """The answer's message. ``content`` and ``refusal`` are always sent (null when empty), as
    OpenAI does; ``tool_calls`` only when the model called tools."""

    role: str
    content: str | None
    refusal: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Struct):
    index: int
    message: ChoiceMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(Response):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"
    #: The tier it ran at (``auto`` runs at ``default``), as OpenAI's answers say.
    service_tier: str | None = None


class ChunkFunction(Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(Struct, omit_defaults=True):
    """A piece of one tool call in a stream: ``id``, ``type`` and the name come in the first
    piece of each call, the arguments' text after it."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChunkFunction | None = None


class ChunkDelta(Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None


class ChunkChoice(Struct):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Response):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
    usage: Usage | None = None
    service_tier: str | None = None


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
    # Load tools' extras, as on chat (the parameter policy applies them the same way).
    min_tokens: Annotated[int, Meta(ge=0)] | None = None
    ignore_eos: bool | None = None
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
#: Previews a streamed image request asks for (OpenAI's ``partial_images``).
PartialImages = Annotated[int, Meta(ge=0, le=MAX_PARTIAL_IMAGES)]


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
    #: Answer with server-sent events (``loom.sdk.image_events``): ``partial_images`` previews,
    #: then the image.
    stream: bool | None = None
    partial_images: PartialImages | None = None
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
