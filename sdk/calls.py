"""Provider calls as data: one message per provider method.

The daemon never hands a model worker a closure. Every capability method of the provider protocols
(:mod:`loom.sdk.protocols`) has a call struct here carrying its arguments; ``apply`` invokes the
method on a provider with a :class:`~loom.sdk.protocols.RunContext`. Because a call is a msgspec
struct, the same value runs in the daemon's process, crosses a pipe to a worker process, or goes
to a Ray actor; :data:`ProviderCall` is the tagged union a worker decodes, and
:func:`result_type` says how to decode what comes back.
"""

from __future__ import annotations

from typing import Any, ClassVar

from msgspec import Struct

from .protocols import Embeddings, ImageJob, RunContext, TextChunk, VisionScores
from .types import Capability, ChatCompletionRequest, CompletionRequest


class Call(Struct, frozen=True, kw_only=True, tag_field="method"):
    """Base of the call structs: the tag is the provider method's name."""

    #: The capability whose protocol declares the method.
    capability: ClassVar[Capability]
    #: True when the method yields chunks (a generator) rather than returning one value.
    streams: ClassVar[bool] = False
    #: The type of the return value (or of each chunk, for streams), for decoding over a wire.
    returns: ClassVar[Any]

    @property
    def method(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    def args(self) -> tuple:
        """The method's positional arguments, in order (``ctx`` comes last, added by apply)."""
        return tuple(getattr(self, f) for f in self.__struct_fields__)

    def apply(self, provider: Any, ctx: RunContext) -> Any:
        """Call the method on ``provider``; returns what it returns (a value, an iterator, an
        awaitable or an async iterator)."""
        return getattr(provider, self.method)(*self.args(), ctx)


class Chat(Call, frozen=True, tag="chat"):
    request: ChatCompletionRequest
    capability = Capability.CHAT
    streams = True
    returns = TextChunk


class Complete(Call, frozen=True, tag="complete"):
    prompt: str
    request: CompletionRequest
    capability = Capability.COMPLETION
    streams = True
    returns = TextChunk


class Embed(Call, frozen=True, tag="embed"):
    inputs: list[str]
    capability = Capability.EMBEDDING
    returns = Embeddings


class GenerateImages(Call, frozen=True, tag="generate_images"):
    job: ImageJob
    capability = Capability.IMAGE
    returns = list[bytes]


class Describe(Call, frozen=True, tag="describe"):
    image: bytes
    prompt: str | None = None
    detail: str = "normal"
    max_tokens: int | None = None
    capability = Capability.VISION
    returns = str


class Score(Call, frozen=True, tag="score"):
    image: bytes
    text: str
    capability = Capability.VISION
    returns = VisionScores


class Translate(Call, frozen=True, tag="translate"):
    texts: list[str]
    source: str
    target: str
    capability = Capability.TRANSLATION
    returns = list[str]


#: Every call a model worker accepts, as one tagged union (decode with ``type=ProviderCall``).
ProviderCall = Chat | Complete | Embed | GenerateImages | Describe | Score | Translate

#: The methods of each capability, derived from the call structs: the one table of the contract.
CAPABILITY_METHODS: dict[Capability, tuple[str, ...]] = {}
for _cls in (Chat, Complete, Embed, GenerateImages, Describe, Score, Translate):
    _tag = _cls.__struct_config__.tag
    assert isinstance(_tag, str)
    CAPABILITY_METHODS[_cls.capability] = (*CAPABILITY_METHODS.get(_cls.capability, ()), _tag)
del _cls, _tag


def result_type(call: Call) -> Any:
    """How to decode the result of ``call`` (each chunk's type for a streaming call)."""
    return call.returns


__all__ = [
    "CAPABILITY_METHODS",
    "Call",
    "Chat",
    "Complete",
    "Describe",
    "Embed",
    "GenerateImages",
    "ProviderCall",
    "Score",
    "Translate",
    "result_type",
]
