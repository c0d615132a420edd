"""Batches (OpenAI's Batch API): every batch with its status and progress, refreshed while any
runs; each links to the job that runs it. The page reads the same service as ``/v1/batches``."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.di import NamedDependency

from ..batches import Batches
from ..batches.store import ENDED
from .render import page

#: Batches the page lists, newest first.
LIMIT = 100


def batch_rows(batches: Batches) -> list[dict]:
    rows = []
    for b in batches.page(None, limit=LIMIT)["data"]:
        counts = b["request_counts"]
        finished = counts["completed"] + counts["failed"]
        rows.append(
            {
                **b,
                "progress": 100.0 * finished / counts["total"] if counts["total"] else 0.0,
                "job_id": batches.store.get(b["id"])["job_id"],
                "running": b["status"] not in ENDED,
            }
        )
    return rows


@get("/batches")
async def batches_page(request: Request, batches: NamedDependency[Batches]) -> Response:
    return page(request, "batches.html", batches=batch_rows(batches))


@get("/batches/rows")
async def batches_rows(request: Request, batches: NamedDependency[Batches]) -> Response:
    """The table's rows alone (the page polls them while a batch runs)."""
    return page(request, "_batch_rows.html", batches=batch_rows(batches))


ROUTES = [batches_page, batches_rows]
