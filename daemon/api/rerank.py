"""Rerank and score: ``POST /v1/rerank`` (also ``/rerank`` and ``/v2/rerank``, where Cohere, Jina
and vLLM clients look) and vLLM's ``POST /v1/score``, served by models with the rerank capability.

The model is the one named, else the ``[routes] rerank`` model. Image documents (CLIP models) are
fetched here into data URIs, as chat's image URLs are, so no provider fetches anything itself.
Providers score each document in order; sorting and ``top_n`` are the route's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit

from litestar import Request, Response, post
from litestar.di import NamedDependency
from loom.sdk.rerank import (
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    TextScore,
    TextScoreRequest,
    TextScoreResponse,
)

from ..chat.intake import data_uri
from ..config import Routes
from ..files import FileStore
from ..http.body import BodyReader
from ..image_fetch import ImageFetcher
from ..media import image_bytes
from ..reranking import rank, rerank_model
from ..routing import ModelRouter
from .openapi import BODY_ERRORS, MODEL_ERRORS, doc
from .respond import PROVENANCE, json_response, served_by

_FILES = "/v1/files/"


class ImageDocuments:
    """Turns image references into data URIs: this daemon's own ``/v1/files/`` from disk, other
    http(s) URLs through the SSRF-guarded fetcher, data URIs and bare base64 checked as they are."""

    def __init__(self, files: FileStore, fetcher: ImageFetcher, own_host: str) -> None:
        self.files, self.fetcher, self.own_host = files, fetcher, own_host

    async def uri(self, ref: str, param: str) -> str:
        parts = urlsplit(ref)
        own = parts.scheme in ("http", "https") and parts.netloc == self.own_host and parts.path.startswith(_FILES)
        if "://" in ref and not own:  # the fetcher takes http(s) under its rules and refuses other schemes
            return data_uri(await self.fetcher.fetch(ref, param))
        return data_uri(await asyncio.to_thread(image_bytes, ref, self.files, param))

    async def inputs(self, documents: list[RerankDocument]) -> list[str]:
        """What the provider is given for each document: its text, or its image as a data URI."""

        async def one(i: int, d: RerankDocument) -> str:
            return d.text if d.text is not None else await self.uri(d.image or "", f"documents[{i}].image")

        return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(documents))))


RERANK_DOC = doc(
    "Rerank documents by relevance to a query",
    body=RerankRequest,
    returns=RerankResponse,
    errors=BODY_ERRORS + MODEL_ERRORS,
    headers=PROVENANCE,
)


async def _rerank(
    request: Request,
    bodies: BodyReader,
    router: ModelRouter,
    routes: Routes,
    files: FileStore,
    fetcher: ImageFetcher,
) -> Response:
    req = await bodies.decode(request, RerankRequest)
    documents = req.document_objects()
    model = rerank_model(req.model, router, routes)
    query = req.query
    if query.startswith("data:image/"):
        query = data_uri(await asyncio.to_thread(image_bytes, query, files, "query"))
    inputs = await ImageDocuments(files, fetcher, request.url.netloc).inputs(documents)
    entry, scores, tokens = await rank(router, model, query, inputs)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep their order
    results = [
        RerankResult(index=i, relevance_score=scores[i], document=documents[i] if req.return_documents else None)
        for i in order[: req.top_n]
    ]
    body = RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}", model=model, results=results, usage=RerankUsage(tokens, tokens)
    )
    return json_response(body, headers=served_by(entry))


@post("/rerank", status_code=200, operation_class=RERANK_DOC)
async def rerank(
    request: Request,
    bodies: NamedDependency[BodyReader],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    files: NamedDependency[FileStore],
    fetcher: NamedDependency[ImageFetcher],
) -> Response:
    return await _rerank(request, bodies, router, routes, files, fetcher)


@post(["/rerank", "/v2/rerank"], status_code=200, operation_class=RERANK_DOC)
async def rerank_unversioned(
    request: Request,
    bodies: NamedDependency[BodyReader],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    files: NamedDependency[FileStore],
    fetcher: NamedDependency[ImageFetcher],
) -> Response:
    """The same route where Jina's and Cohere's clients look (a base URL without ``/v1``)."""
    return await _rerank(request, bodies, router, routes, files, fetcher)


@post(
    "/score",
    status_code=200,
    operation_class=doc(
        "Score text pairs (vLLM's score API)",
        body=TextScoreRequest,
        returns=TextScoreResponse,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def score(
    request: Request,
    bodies: NamedDependency[BodyReader],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
) -> Response:
    req = await bodies.decode(request, TextScoreRequest)
    pairs = req.pairs()
    model = rerank_model(req.model, router, routes)
    # One call per distinct first text (usually one): a reranker scores documents against a query.
    groups: dict[str, list[int]] = {}
    for i, (left, _) in enumerate(pairs):
        groups.setdefault(left, []).append(i)
    ranked = await asyncio.gather(
        *(rank(router, model, left, [pairs[i][1] for i in indices]) for left, indices in groups.items())
    )
    scores: dict[int, float] = {}
    for indices, (_, out, _) in zip(groups.values(), ranked, strict=True):
        scores.update(zip(indices, out, strict=True))
    tokens = sum(t for _, _, t in ranked)
    body = TextScoreResponse(
        id=f"score-{uuid.uuid4().hex}",
        model=model,
        created=int(time.time()),
        data=[TextScore(index=i, score=scores[i]) for i in range(len(pairs))],
        usage=RerankUsage(tokens, tokens),
    )
    return json_response(body, headers=served_by(ranked[0][0]))


ROUTES = [rerank, score]
#: At the root, beside ``/v1``: the same key guard.
UNVERSIONED = [rerank_unversioned]
