"""Wire types of the rerank routes: ``POST /v1/rerank`` in the shape Cohere and Jina defined and
vLLM and llama-server serve (also at ``/rerank`` and ``/v2/rerank``), and vLLM's ``POST /v1/score``.

A document is a string, or an object with ``text`` or ``image``; an image is a data URI, bare
base64 or an http(s) URL (fetched by the daemon under ``[daemon.image_urls]``), and a string that
is a ``data:image/...`` URI is an image too. Only models that read images (CLIP) rank them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from .errors import InvalidRequest
from .types import Request, Response

#: Documents one request may rank (Cohere's limit).
MAX_DOCUMENTS = 1000


class RerankDocument(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One document as an object: exactly one of ``text`` and ``image``."""

    text: str | None = None
    image: str | None = None

    def check(self, param: str) -> None:
        if (self.text is None) == (self.image is None):
            raise InvalidRequest(f"{param} must have exactly one of 'text' and 'image'", param=param)


class RerankRequest(Request, kw_only=True):
    query: Annotated[str, Meta(min_length=1)]
    documents: Annotated[list[str | RerankDocument], Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    #: Left out: the ``[routes] rerank`` model answers.
    model: str | None = None
    #: The best this many come back (all by default); more than there are documents is all of them.
    top_n: Annotated[int, Meta(ge=1)] | None = None
    #: Each result carries its document (as an object), as Jina and vLLM answer by default.
    return_documents: bool = True

    def document_objects(self) -> list[RerankDocument]:
        out = []
        for i, given in enumerate(self.documents):
            if isinstance(given, str):  # a data:image/ URI is a picture, anything else a text
                image = given.startswith("data:image/")
                given = RerankDocument(image=given) if image else RerankDocument(text=given)
            given.check(f"documents[{i}]")
            out.append(given)
        return out


class RerankResult(Struct, omit_defaults=True):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(Response, kw_only=True):
    """Results best first (ties keep the documents' order)."""

    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


TextOrTexts = str | Annotated[list[str], Meta(min_length=1, max_length=MAX_DOCUMENTS)]


class TextScoreRequest(Request, kw_only=True):
    """vLLM's score API: ``text_1`` against each of ``text_2`` (one to many), or pair by pair when
    both are lists of one length."""

    text_1: TextOrTexts
    text_2: TextOrTexts
    model: str | None = None

    def pairs(self) -> list[tuple[str, str]]:
        left = [self.text_1] if isinstance(self.text_1, str) else list(self.text_1)
        right = [self.text_2] if isinstance(self.text_2, str) else list(self.text_2)
        if len(left) == 1:
            left = left * len(right)
        if len(left) != len(right):
            raise InvalidRequest(
                f"text_2 has {len(right)} texts for the {len(left)} of text_1; give one text_1, or as many as text_2",
                param="text_2",
            )
        return list(zip(left, right, strict=True))


class TextScore(Struct):
    index: int
    score: float
    object: Literal["score"] = "score"


class TextScoreResponse(Response, kw_only=True):
    id: str
    model: str
    created: int
    data: list[TextScore]
    usage: RerankUsage
    object: Literal["list"] = "list"


__all__ = [
    "MAX_DOCUMENTS",
    "RerankDocument",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "RerankUsage",
    "TextScore",
    "TextScoreRequest",
    "TextScoreResponse",
]
