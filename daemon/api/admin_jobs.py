"""``POST /admin/jobs/prune``: remove old finished jobs on request (``loom jobs prune`` calls it).

What a user generated is kept by default (``[jobs] retention = "never"``); this removes finished
jobs that finished longer ago than ``older_than``, with their output folders, and their retrieval
entries only when ``rag`` (default: ``[jobs] rag``, "keep") says "delete". ``dry_run`` lists what
would go and removes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from litestar import Request, Response, post
from litestar.di import NamedDependency
from msgspec import Meta, Struct

from ..config import Config
from ..files import FileStore
from ..http.body import BodyReader
from ..jobs import JobRunner
from ..jobs.retention import parse_older_than, prune
from ..rag import RagStore
from .openapi import BODY_ERRORS, doc
from .respond import json_response

#: A duration as the config writes one ("30d", "12h", "90m", "45s").
Duration = Annotated[str, Meta(pattern=r"^\s*[0-9]*\.?[0-9]+\s*(ms|s|m|h|d)?\s*$")]


class PruneRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    #: A duration: "30d", "12h", "90m", or seconds.
    older_than: Duration | Annotated[float, Meta(ge=0)]
    #: List what would be removed; remove nothing.
    dry_run: bool = False
    #: The removed jobs' retrieval entries: "keep" or "delete"; default ``[jobs] rag``.
    rag: Literal["keep", "delete"] | None = None


class PrunedJob(Struct):
    id: str
    pipeline: str
    state: str
    finished_at: float | None
    output_dir: str | None
    #: Retrieval entries removed with the job (or, in a dry run, that would be); None: kept.
    rag_entries: int | None


class Pruned(Struct):
    object: Literal["jobs.prune"]
    dry_run: bool
    older_than_s: float
    rag: Literal["keep", "delete"]
    count: int
    data: list[PrunedJob]


@post(
    "/jobs/prune",
    status_code=200,
    operation_class=doc("Remove old finished jobs", body=PruneRequest, returns=Pruned, errors=BODY_ERRORS),
)
async def prune_jobs(
    request: Request,
    bodies: NamedDependency[BodyReader],
    runner: NamedDependency[JobRunner],
    files: NamedDependency[FileStore],
    rag: NamedDependency[RagStore],
    config: NamedDependency[Config],
) -> Response:
    req = await bodies.decode(request, PruneRequest)
    older_than = parse_older_than(req.older_than)
    mode = req.rag or config.jobs.rag
    removed = await asyncio.to_thread(
        prune, runner.store, files.root, older_than, rag=rag if mode == "delete" else None, dry_run=req.dry_run
    )
    return json_response(
        {
            "object": "jobs.prune",
            "dry_run": req.dry_run,
            "older_than_s": older_than,
            "rag": mode,
            "count": len(removed),
            "data": removed,
        }
    )


ROUTES = [prune_jobs]
