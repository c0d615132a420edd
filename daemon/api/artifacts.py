"""``GET /v1/artifacts``: every pipeline's artefacts, searchable by pipeline, time and text.

Query parameters: ``q`` (words, each matched as a prefix, all required; searched in the
artefact's name, meta, the job's text parameters and the content of text files), ``pipeline``,
``since`` / ``until`` (unix seconds or ISO 8601), ``media_type`` (a prefix: ``image/``),
``job_id``, ``limit``, ``offset``. Newest first; ``metadata.json`` files are left out. A user
finds its own jobs' artefacts only.
"""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.di import NamedDependency

from ..jobs import JobRunner
from ..principals import principal_of
from . import shapes
from .jobs import PAGE, TIME, _int, _time
from .openapi import Query, doc
from .respond import json_response


@get(
    "/artifacts",
    operation_class=doc(
        "Search the artefacts",
        returns=shapes.ArtifactList,
        errors=(400,),
        query=(
            Query("q", {"type": "string"}, "Words, each matched as a prefix, all required"),
            Query("pipeline", {"type": "string"}, "Only this pipeline's"),
            Query("since", TIME, "Made at or after (unix seconds or ISO 8601)"),
            Query("until", TIME, "Made before"),
            Query("media_type", {"type": "string"}, "A media type prefix, such as image/"),
            Query("job_id", {"type": "string"}, "Only this job's"),
            *PAGE,
        ),
    ),
)
async def list_artifacts(request: Request, runner: NamedDependency[JobRunner]) -> Response:
    q = request.query_params
    limit = _int(q.get("limit"), "limit", 50, 1, 1000)
    offset = _int(q.get("offset"), "offset", 0, 0, 10**9)
    rows = runner.store.search_artifacts(
        q=q.get("q"),
        pipeline=q.get("pipeline") or None,
        since=_time(q.get("since"), "since"),
        until=_time(q.get("until"), "until"),
        media_type=q.get("media_type") or None,
        job_id=q.get("job_id") or None,
        limit=limit + 1,
        offset=offset,
        owner=principal_of(request).scope,
    )
    for r in rows:
        r["object"] = "artifact"
        r["url"] = runner.services.storage.url(r["path"])
    return json_response({"object": "list", "data": rows[:limit], "has_more": len(rows) > limit})


ROUTES = [list_artifacts]
