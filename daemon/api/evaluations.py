"""A/B evaluations (seed 004's evaluation page) over the API.

- ``GET /v1/evaluations`` (``job_id``, ``limit``, ``offset``): newest first.
- ``POST /v1/evaluations``: ``{"a": {"job_id", "candidate"?}, "b": {...}, "choice": "a"|"b"|"tie",
  "reason"?, "prompt"?}``; a side without a candidate is that job's winner. Answers 201.
- ``GET /v1/evaluations/export``: every evaluation as JSONL, oldest first.

The web page at ``/ui/evaluate`` records through the same store and :func:`record`.
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Stream

from ..evaluations import EvaluationRequest, EvaluationStore, export_jsonl, resolve_side
from ..jobs.runner import JobRunner
from . import shapes
from .body import BodyReader
from .jobs import PAGE, _int
from .openapi import BODY_ERRORS, Query, doc
from .respond import json_response


def record(runner: JobRunner, store: EvaluationStore, req: EvaluationRequest, source: str) -> dict:
    """Resolve both sides to their images and store the preference."""
    a = resolve_side(runner, req.a, "a")
    b = resolve_side(runner, req.b, "b")
    return store.add(a, b, req.choice, reason=req.reason, prompt=req.prompt, source=source)


@get(
    "/evaluations",
    operation_class=doc(
        "List A/B preferences",
        returns=shapes.EvaluationList,
        errors=(400,),
        query=(Query("job_id", {"type": "string"}, "Only preferences between images of this job"), *PAGE),
    ),
)
async def list_evaluations(request: Request, evaluations: NamedDependency[EvaluationStore]) -> Response:
    q = request.query_params
    limit = _int(q.get("limit"), "limit", 50, 1, 1000)
    offset = _int(q.get("offset"), "offset", 0, 0, 10**9)
    rows = evaluations.list(job_id=q.get("job_id") or None, limit=limit + 1, offset=offset)
    return json_response({"object": "list", "data": rows[:limit], "has_more": len(rows) > limit})


@post(
    "/evaluations",
    status_code=201,
    operation_class=doc(
        "Record an A/B preference",
        body=EvaluationRequest,
        returns=shapes.Evaluation,
        status=201,
        errors=(*BODY_ERRORS, 404),
    ),
)
async def create_evaluation(
    request: Request,
    bodies: NamedDependency[BodyReader],
    runner: NamedDependency[JobRunner],
    evaluations: NamedDependency[EvaluationStore],
) -> Response:
    req = await bodies.decode(request, EvaluationRequest)
    return json_response(record(runner, evaluations, req, "api"), status_code=201)


def export_response(store: EvaluationStore) -> Stream:
    return Stream(
        export_jsonl(store),
        media_type="application/jsonl",
        headers={"content-disposition": 'attachment; filename="evaluations.jsonl"'},
    )


@get(
    "/evaluations/export",
    operation_class=doc("Every A/B preference as JSON lines, oldest first", media_type="application/jsonl"),
)
async def export_evaluations(evaluations: NamedDependency[EvaluationStore]) -> Stream:
    return export_response(evaluations)


ROUTES = [list_evaluations, create_evaluation, export_evaluations]
