"""Provider calls as data: one message per provider method.

The daemon never hands a model worker a closure. Every capability method of the provider protocols
(:mod:`loom.sdk.protocols`) has a call struct here carrying its arguments; ``apply`` invokes the
method on a provider with a :class:`~loom.sdk.protocols.RunContext`. Because a call is a msgspec
struct, the same value runs in the daemon's process, crosses a pipe to a worker process, or goes
to a Ray actor; :data:`ProviderCall` is the tagged union a worker decodes, and
:func:`result_type` says how to decode what comes back.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import msgspec
from msgspec import Struct

from .protocols import (
    ChatProvider,
    CompletionProvider,
    EmbeddingProvider,
    Embeddings,
    ImageJob,
    ImageProvider,
    RerankProvider,
    RerankScores,
    RunContext,
    TextChunk,
    TranslationProvider,
    VisionProvider,
    VisionScores,
)
from .types import Capability, ChatCompletionRequest, CompletionRequest


class Call(Struct, frozen=True, kw_only=True, tag_field="method"):
    """Base of the call structs: the tag is the provider method's name."""

    #: The capability whose protocol declares the method, and that protocol.
    capability: ClassVar[Capability]
    protocol: ClassVar[type]
    #: True when the method yields chunks (a generator) rather than returning one value.
    streams: ClassVar[bool] = False
    #: The type of the return value (or of each chunk, for streams), for decoding over a wire.
    returns: ClassVar[Any]

    @property
    def method(self) -> str:
        return _method_of(type(self))

    def args(self) -> tuple:
        """The method's positional arguments, in order (``ctx`` comes last, added by apply)."""
        return msgspec.structs.astuple(self)

    def apply(self, provider: Any, ctx: RunContext) -> Any:
        """Call the method on ``provider``; returns what it returns (a value, an iterator, an
        awaitable or an async iterator)."""
        return getattr(provider, self.method)(*self.args(), ctx)


class Chat(Call, frozen=True, tag="chat"):
    request: ChatCompletionRequest
    capability = Capability.CHAT
    protocol = ChatProvider
    streams = True
    returns = TextChunk


class Complete(Call, frozen=True, tag="complete"):
    prompt: str
    request: CompletionRequest
    capability = Capability.COMPLETION
    protocol = CompletionProvider
    streams = True
    returns = TextChunk


class Embed(Call, frozen=True, tag="embed"):
    inputs: list[str]
    capability = Capability.EMBEDDING
    protocol = EmbeddingProvider
    returns = Embeddings


class GenerateImages(Call, frozen=True, tag="generate_images"):
    job: ImageJob
    capability = Capability.IMAGE
    protocol = ImageProvider
    returns = list[bytes]


class Describe(Call, frozen=True, tag="describe"):
    image: bytes
    prompt: str | None = None
    detail: str = "normal"
    max_tokens: int | None = None
    capability = Capability.VISION
    protocol = VisionProvider
    returns = str


class Score(Call, frozen=True, tag="score"):
    image: bytes
    text: str
    capability = Capability.VISION
    protocol = VisionProvider
    returns = VisionScores


class Translate(Call, frozen=True, tag="translate"):
    texts: list[str]
    source: str
    target: str
    capability = Capability.TRANSLATION
    protocol = TranslationProvider
    returns = list[str]


class Rerank(Call, frozen=True, tag="rerank"):
    query: str
    documents: list[str]
    capability = Capability.RERANK
    protocol = RerankProvider
    returns = RerankScores


#: Every call a model worker accepts, as one tagged union (decode with ``type=ProviderCall``).
ProviderCall = Chat | Complete | Embed | GenerateImages | Describe | Score | Translate | Rerank

#: The call structs, one per provider method: the one encoding of the provider contract.
CALLS: tuple[type[Call], ...] = (Chat, Complete, Embed, GenerateImages, Describe, Score, Translate, Rerank)


def _method_of(cls: type[Call]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _check_protocols() -> None:
    """Each call struct's fields are its method's parameters in the capability's protocol (then
    ``ctx``): the protocols document the methods, the structs carry them, and they cannot drift."""
    for cls in CALLS:
        method = getattr(cls.protocol, _method_of(cls), None)
        if method is None:
            raise TypeError(f"{cls.protocol.__name__} has no {_method_of(cls)}() for loom.sdk.calls.{cls.__name__}")
        params = tuple(inspect.signature(method).parameters)[1:]  # without self
        if params != (*cls.__struct_fields__, "ctx"):
            raise TypeError(
                f"{cls.protocol.__name__}.{_method_of(cls)}{params} does not match "
                f"loom.sdk.calls.{cls.__name__}{cls.__struct_fields__} + ctx"
            )


_check_protocols()

#: The methods of each capability, derived from the call structs.
CAPABILITY_METHODS: dict[Capability, tuple[str, ...]] = {}
#: The protocol of each capability, derived from the call structs.
CAPABILITY_PROTOCOLS: dict[Capability, type] = {}
for _cls in CALLS:
    CAPABILITY_METHODS[_cls.capability] = (*CAPABILITY_METHODS.get(_cls.capability, ()), _method_of(_cls))
    CAPABILITY_PROTOCOLS[_cls.capability] = _cls.protocol
del _cls


def missing_methods(provider_cls: type) -> list[tuple[Capability, str]]:
    """(capability, method) for each method a provider class declares a capability for but lacks;
    what the daemon checks at registration and the conformance kit checks in a plugin's tests."""
    return [
        (capability, method)
        for capability in sorted(getattr(provider_cls, "capabilities", ()), key=lambda c: c.value)
        for method in CAPABILITY_METHODS[capability]
        if not callable(getattr(provider_cls, method, None))
    ]


def result_type(call: Call) -> Any:
    """How to decode the result of ``call`` (each chunk's type for a streaming call)."""
    return call.returns


__all__ = [
    "CALLS",
    "CAPABILITY_METHODS",
    "CAPABILITY_PROTOCOLS",
    "Call",
    "Chat",
    "Complete",
    "Describe",
    "Embed",
    "GenerateImages",
    "ProviderCall",
    "Rerank",
    "Score",
    "Translate",
    "missing_methods",
    "result_type",
]
