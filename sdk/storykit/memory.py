"""Remembering finished stories and images, and recalling similar ones (seed 001's RAG).

Every finished story and image is embedded and stored in the daemon's retrieval indices
(``ctx.rag_add``): stories in ``stories``, images in ``images``. The embedding model is
CLIP-class by preference: the vision route's model when it can embed (so texts and images share
one space and a story can find pictures), else the embedding route. Memory is an enhancement:
when embedding or storing fails, the pipeline still delivers and says why in its result.

A pipeline may rerank what it recalled (``rerank``): ``RERANK_DEPTH`` times as many candidates
are recalled, a rerank model orders them by their text's relevance to the story or picture
description, and the best are kept.
"""

from __future__ import annotations

from typing import Any

from ..errors import Cancelled, LoomError
from ..pipelines import PipelineContext
from . import media
from .writing import excerpt

STORIES, IMAGES = "stories", "images"
#: Characters of a retrieved item's text that go into prompts and results.
SNIPPET = 600
#: Candidates recalled per item kept, when the recalled items are reranked.
RERANK_DEPTH = 3


def embedding_model(ctx: PipelineContext, requested: str | None = None) -> str:
    """The named model, else the vision route's model if it embeds (CLIP), else the embedding route."""
    if requested:
        return ctx.model_for("embedding", requested)
    try:
        return ctx.model_for("embedding", ctx.model_for("vision"))
    except LoomError:
        return ctx.model_for("embedding")


def try_embedding_model(ctx: PipelineContext, requested: str | None = None) -> tuple[str | None, str | None]:
    """(model, None), or (None, why) when no model can embed; a model the user named that
    cannot embed is their mistake and raises."""
    if requested:
        return embedding_model(ctx, requested), None
    try:
        return embedding_model(ctx), None
    except LoomError as e:
        return None, f"{type(e).__name__}: {e.message}"


async def embed_text(ctx: PipelineContext, key: str, model: str, text: str) -> list[float]:
    async def call() -> list[float]:
        return (await ctx.embed(model, [text]))[0]

    return await ctx.step(key, call)


async def embed_image(ctx: PipelineContext, key: str, model: str, image: bytes) -> list[float]:
    async def call() -> list[float]:
        return (await ctx.embed(model, [media.data_uri(image)]))[0]

    return await ctx.step(key, call)


def hit_view(hit: dict[str, Any]) -> dict[str, Any]:
    """A retrieved item as results and events show it."""
    return {
        "collection": hit.get("collection"),
        "id": hit.get("id"),
        "score": hit.get("score"),
        "kind": hit.get("kind"),
        "text": excerpt(hit.get("text") or "", SNIPPET),
        "path": hit.get("path"),
        "url": hit.get("url"),
        "job_id": hit.get("job_id"),
        "pipeline": hit.get("pipeline"),
        "meta": hit.get("meta") or {},
    }


async def recall(
    ctx: PipelineContext, key: str, model: str, vector: list[float], collections: list[str], k: int
) -> list[dict[str, Any]]:
    """The top ``k`` of each collection (a durable step: a resumed job sees the same context)."""

    async def call() -> list[dict[str, Any]]:
        hits = []
        for collection in collections:
            hits += [hit_view(h) for h in await ctx.rag_search(collection, vector, model=model, k=k)]
        return hits

    if k <= 0:
        return []
    return await ctx.step(key, call)


async def remember(ctx: PipelineContext, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Store items (``collection``, ``model``, ``vector`` or ``text``/``image`` to embed, ``kind``,
    ``text``, ``path``, ``meta``); never fails the job: returns what was stored and any error."""
    stored: list[dict[str, Any]] = []
    try:
        for n, item in enumerate(items):
            vector = item.get("vector")
            if vector is None and item.get("image") is not None:
                vector = await embed_image(ctx, f"{key}/embed-{n}", item["model"], item["image"])
            elif vector is None:
                vector = await embed_text(ctx, f"{key}/embed-{n}", item["model"], item["text"])

            async def add(item=item, vector=vector) -> dict[str, Any]:
                return await ctx.rag_add(
                    item["collection"],
                    vector,
                    model=item["model"],
                    kind=item.get("kind", "text"),
                    text=item.get("text", ""),
                    path=item.get("path"),
                    meta=item.get("meta"),
                )

            stored.append(await ctx.step(f"{key}/add-{n}", add))
    except Cancelled:
        raise
    except LoomError as e:
        return {"stored": stored, "error": f"{type(e).__name__}: {e.message}"}
    return {"stored": stored, "error": None}


def rerank_model(ctx: PipelineContext, wanted: bool, requested: str | None) -> str | None:
    """The rerank model when the job asks for reranking (``rerank`` or a named model), else None;
    a job that asks while no model can rerank fails at once, naming ``[routes] rerank``."""
    return ctx.model_for("rerank", requested) if wanted or requested else None


async def try_rerank(
    ctx: PipelineContext, key: str, model: str, query: str, hits: list[dict[str, Any]], keep: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The best ``keep`` of ``hits`` by ``model``'s relevance of their text to ``query`` (a durable
    step; each hit gains ``rerank_score``). On failure the first ``keep`` as recalled, and why."""

    async def call() -> list[dict[str, Any]]:
        scores = await ctx.rerank(model, query, [h.get("text") or "" for h in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])  # ties keep the recalled order
        return [{**hits[i], "rerank_score": scores[i]} for i in order[:keep]]

    if not hits:
        return [], None
    try:
        return await ctx.step(key, call), None
    except Cancelled:
        raise
    except LoomError as e:
        by_search = sorted(hits, key=lambda h: -(h.get("score") or 0.0))
        return by_search[:keep], f"{type(e).__name__}: {e.message}"


async def try_recall(
    ctx: PipelineContext, key: str, model: str | None, vector: list[float] | None, collections: list[str], k: int
) -> tuple[list[dict[str, Any]], str | None]:
    """``recall`` that degrades to no context (with the reason) instead of failing the job."""
    if model is None or vector is None:
        return [], None
    try:
        return await recall(ctx, key, model, vector, collections, k), None
    except Cancelled:
        raise
    except LoomError as e:
        return [], f"{type(e).__name__}: {e.message}"
