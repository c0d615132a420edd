"""Retrieval (RAG): FAISS indices of finished stories and images, kept under ``<data_dir>/rag/``.

``rag_lifespan(loom)`` opens the store as the app starts (loading saved indices in the
background, so start-up never waits on, or imports, faiss) and saves and closes it at shutdown.
Pipelines reach it through ``ctx.rag_add`` / ``ctx.rag_search``; clients through
``GET /v1/rag/stats`` and ``POST /v1/rag/search``.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from .store import RagStore

__all__ = ["RagStore", "rag_lifespan"]


def rag_lifespan(loom):
    @asynccontextmanager
    async def lifespan(app):
        store = RagStore(loom.config.data_dir / "rag")
        store.start()
        loom.rag = store
        try:
            yield
        finally:
            loom.rag = None
            # Saving a big index takes a moment: keep the loop free while it does.
            await asyncio.to_thread(store.close)

    return lifespan
