"""Reranking as the daemon's routes use it: which model reranks, one call through the router (and
so the scheduler), and retrieval hits put in the order the reranker gives."""

from __future__ import annotations

from typing import Any

from loom.sdk import calls
from loom.sdk.errors import InvalidRequest, ProviderError
from loom.sdk.types import Capability

from .config import Routes
from .models import ModelEntry
from .routing import ModelRouter


def rerank_model(requested: str | None, router: ModelRouter, routes: Routes, param: str = "model") -> str:
    """The model named, else what ``[routes] rerank`` (or a runtime switch) routes to."""
    model = requested or router.route_for(Capability.RERANK, routes.rerank)
    if not model:
        raise InvalidRequest(
            f"{param} is required (no rerank model is routed by default: [routes] rerank)", param=param
        )
    return model


async def rank(
    router: ModelRouter, model: str, query: str, documents: list[str]
) -> tuple[ModelEntry, list[float], int]:
    """(the model that served, one score per document in order, the tokens it read)."""
    entry, result = await router.run(model, Capability.RERANK, calls.Rerank(query=query, documents=documents))
    if len(result.scores) != len(documents):
        raise ProviderError(f"{entry.id} returned {len(result.scores)} scores for {len(documents)} documents")
    return entry, result.scores, result.prompt_tokens


def reorder(hits: list[dict[str, Any]], scores: list[float]) -> list[dict[str, Any]]:
    """``hits`` best first by the reranker's ``scores`` (each hit keeps its search ``score`` and
    gains ``rerank_score``); ties keep the search's order."""
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [{**hits[i], "rerank_score": scores[i]} for i in order]
