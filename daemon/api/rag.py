"""Retrieval: ``GET /v1/rag/stats`` and ``POST /v1/rag/search`` over the stored stories and images.

A search embeds its query (a text, or an image as a data URI or a ``/v1/files/`` URL) with the
embedding model that built the indices, then searches each requested collection. With no
``model`` named, every model that has indexed items in those collections is used (usually one)
and the hits are merged by score. CLIP-class models put texts and images in one space, so a text
query finds images and an image query finds stories.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from loom.sdk import calls
from loom.sdk.errors import InvalidRequest
from loom.sdk.types import Capability
from msgspec import Meta

from ..files import FileStore
from ..http.body import BodyReader
from ..media import image_bytes
from ..models import ModelRegistry
from ..rag import RagStore
from ..routing import ModelRouter
from ..storage.service import Storage
from . import shapes
from .openapi import BODY_ERRORS, MODEL_ERRORS, doc
from .respond import json_response

#: Embedding models a default search embeds the query with, at most.
MAX_MODELS = 4


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
) -> Response:
    store = rag
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
    hits: list[dict] = []
    for model in models:
        _, result = await router.run(model, Capability.EMBEDDING, calls.Embed(inputs=[query]))
        vector = result.vectors[0]
        for collection in collections:
            hits.extend(await asyncio.to_thread(store.search, collection, vector, model=model, k=req.k))
    hits.sort(key=lambda h: -h["score"])
    for hit in hits:  # job retention may have deleted the file since: say so rather than link to a 404
        if hit["path"] and not (files.root / hit["path"]).is_file():
            hit["url"], hit["file_missing"] = None, True
    body = {
        "object": "list",
        "query": {"kind": "text" if req.text is not None else "image", "collections": collections, "k": req.k},
        "models": models,
        "data": hits[: req.k],
    }
    return json_response(storage.sign_tree(body))


ROUTES = [rag_stats, rag_search]
