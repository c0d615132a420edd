"""Retrieval (RAG): FAISS indices of finished stories and images, kept under ``<data_dir>/rag/``.

The services factory opens the store; the app's lifespan loads saved indices in the background
(so start-up never waits on, or imports, faiss) and saves and closes it at shutdown. Pipelines
reach it through ``ctx.rag_add`` / ``ctx.rag_search``; clients through ``GET /v1/rag/stats`` and
``POST /v1/rag/search``.
"""

from __future__ import annotations

from .store import RagStore

__all__ = ["RagStore"]
