"""Retrieval: ``GET /v1/rag/stats`` and ``POST /v1/rag/search`` over the stored stories and images.

A search embeds its query (a text, or an image as a data URI or a ``/v1/files/`` URL) with the
embedding model that built the indices, then searches each requested collection. With no
``model`` named, every model that has indexed items in those collections is used (usually one)
and the hits are merged by score. CLIP-class models put texts and images in one space, so a text
query finds images and an image query finds stories.

With ``rerank`` (or a ``rerank_model``), a deeper list of candidates is fetched and a rerank model
(``[routes] rerank`` unless named) orders them by their text's relevance to the query: a
cross-encoder reads query and text together, which a vector search cannot.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from loom.sdk import calls
from loom.sdk.errors import InvalidRequest, LoomError
from loom.sdk.types import Capability
from msgspec import Meta

from ..config import Routes
from ..files import FileStore
from ..http.body import BodyReader
from ..media import image_bytes
from ..models import ModelRegistry
from ..principals import principal_of
from ..rag import RagStore
from ..reranking import rank, reorder, rerank_model
from ..routing import ModelRouter
from ..storage.service import Storage
from . import shapes
from .openapi import BODY_ERRORS, MODEL_ERRORS, doc
from .respond import json_response

#: Embedding models a default search embeds the query with, at most.
MAX_MODELS = 4
#: A reranked search reranks this many candidates per hit asked for (``k``), at most MAX_CANDIDATES.
RERANK_DEPTH, MAX_CANDIDATES = 4, 100


class RagSearchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Exactly one of ``text`` and ``image`` (a data URI, or the URL of a file Loom served).
    text: Annotated[str, Meta(min_length=1, max_length=20_000)] | None = None
    image: str | None = None
    #: Collections to search ("stories", "images", ...); all of them by default.
    collections: list[str] | None = None
    collection: str | None = None
    k: Annotated[int, Meta(ge=1, le=100)] = 5
    #: The embedding model whose index to search; by default every model with items.
    model: str | None = None
    #: Rerank the candidates with the ``[routes] rerank`` model (or ``rerank_model``, which
    #: implies it) before the best ``k`` are kept.
    rerank: bool = False
    rerank_model: str | None = None


@get("/rag/stats", operation_class=doc("The retrieval indices", returns=shapes.RagStats))
async def rag_stats(rag: NamedDependency[RagStore]) -> Response:
    return json_response(rag.stats())


def _data_uri(data: bytes) -> str:
    kind = "jpeg" if data[:3] == b"\xff\xd8\xff" else "webp" if data[8:12] == b"WEBP" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


@post(
    "/rag/search",
    status_code=200,
    operation_class=doc(
        "Search stories and images",
        body=RagSearchRequest,
        returns=shapes.RagSearchResult,
        errors=BODY_ERRORS + MODEL_ERRORS,
    ),
)
async def rag_search(
    request: Request,
    bodies: NamedDependency[BodyReader],
    rag: NamedDependency[RagStore],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    files: NamedDependency[FileStore],
    storage: NamedDependency[Storage],
    routes: NamedDependency[Routes],
) -> Response:
    store = rag
    scope = principal_of(request).scope  # a user searches its own items only
    req = await bodies.decode(request, RagSearchRequest)
    if req.text is not None and req.image is None:
        query = req.text
    elif req.image is not None and req.text is None:
        query = _data_uri(image_bytes(req.image, files))
    else:
        raise InvalidRequest("give exactly one of 'text' and 'image' as the query", param="text")
    collections = list(req.collections or []) + ([req.collection] if req.collection else [])
    collections = collections or store.collections()
    if req.model:
        registry.for_capability(req.model, Capability.EMBEDDING)
        models = [req.model]
    else:
        models = store.models(collections)[:MAX_MODELS]
    reranker = None
    if req.rerank or req.rerank_model:
        reranker = rerank_model(req.rerank_model, router, routes, "rerank_model")
        try:  # before any embedding: a 404 / 400 at once, naming the field
            registry.for_capability(reranker, Capability.RERANK)
        except LoomError as e:
            e.param = "rerank_model" if req.rerank_model else "rerank"
            raise
    depth = min(MAX_CANDIDATES, req.k * RERANK_DEPTH) if reranker else req.k
    hits: list[dict] = []
    for model in models:
        _, result = await router.run(model, Capability.EMBEDDING, calls.Embed(inputs=[query]))
        vector = result.vectors[0]
        for collection in collections:
            found = await asyncio.to_thread(store.search, collection, vector, model=model, k=depth, owner=scope)
            hits.extend(found)
    hits.sort(key=lambda h: -h["score"])
    if reranker is not None and hits:
        hits = hits[:depth]
        _, scores, _ = await rank(router, reranker, query, [h["text"] for h in hits])
        hits = reorder(hits, scores)
    for hit in hits:  # job retention may have deleted the file since: say so rather than link to a 404
        if hit["path"] and not (files.root / hit["path"]).is_file():
            hit["url"], hit["file_missing"] = None, True
    body = {
        "object": "list",
        "query": {"kind": "text" if req.text is not None else "image", "collections": collections, "k": req.k},
        "models": models,
        "reranked_by": reranker,
        "data": hits[: req.k],
    }
    return json_response(storage.sign_tree(body))


ROUTES = [rag_stats, rag_search]
