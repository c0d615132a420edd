"""A/B evaluations (seed 004's evaluation page) over the API.

- ``GET /v1/evaluations`` (``job_id``, ``limit``, ``offset``): newest first.
- ``POST /v1/evaluations``: ``{"a": {"job_id", "candidate"?}, "b": {...}, "choice": "a"|"b"|"tie",
  "reason"?, "prompt"?}``; a side without a candidate is that job's winner. Answers 201.
- ``GET /v1/evaluations/export``: every evaluation as JSONL, oldest first.
- ``GET /v1/evaluations/questions``: pairs running jobs wait on a person for (the beam search's
  person judge); ``POST /v1/evaluations`` with ``"question": "<id>"`` answers one.

The web page at ``/ui/evaluate`` records through the same store and :func:`record`. A user
lists, exports and answers about its own jobs only; an evaluation is its recorder's.
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Stream
from loom.sdk.errors import InvalidRequest

from ..evaluations import EvaluationRequest, EvaluationStore, Side, export_jsonl, resolve_side
from ..http.body import BodyReader
from ..jobs.runner import JobRunner
from ..principals import UNOWNED, Principal, principal_of
from ..questions import Questions
from ..storage.service import Storage
from . import shapes
from .jobs import PAGE, _int
from .openapi import BODY_ERRORS, Query, doc
from .respond import json_response


def own_questions(runner: JobRunner, questions: Questions, owner: str | None, job_id: str | None = None) -> list:
    """The waiting questions of jobs ``owner`` (a user's scope; None: everyone's) may see."""
    pending = questions.pending(job_id)
    if owner is None:
        return pending
    return [q for q in pending if ((runner.store.get_job(q.job_id) or {}).get("owner") or UNOWNED) == owner]


def record(
    runner: JobRunner,
    store: EvaluationStore,
    questions: Questions,
    req: EvaluationRequest,
    source: str,
    principal: Principal,
) -> dict:
    """Resolve both sides to their images and store the preference (``principal``'s, who may
    only name its own jobs); one that answers a question goes to the job waiting on it."""
    a_side, b_side, question = req.a, req.b, None
    scope = principal.scope
    if req.question is not None:
        question = questions.sides(req.question)
        if question not in own_questions(runner, questions, scope, question.job_id):
            questions.sides("")  # another's question: the same answer as one that is not waiting
        asked = {(question.a["job_id"], question.a["candidate"]), (question.b["job_id"], question.b["candidate"])}
        a_side = a_side or Side(question.a["job_id"], question.a["candidate"])
        b_side = b_side or Side(question.b["job_id"], question.b["candidate"])
        if {(a_side.job_id, a_side.candidate), (b_side.job_id, b_side.candidate)} != asked:
            raise InvalidRequest(f"question '{question.id}' asks about other images", param="question")
        source = "judge"
    elif a_side is None or b_side is None:
        raise InvalidRequest(
            "name both images (a and b), or the question they answer", param="a" if a_side is None else "b"
        )
    a = resolve_side(runner, a_side, "a", scope)
    b = resolve_side(runner, b_side, "b", scope)
    prompt = req.prompt if req.prompt is not None else (question.prompt if question else None)
    saved = store.add(
        a,
        b,
        req.choice,
        reason=req.reason,
        prompt=prompt,
        source=source,
        question_id=req.question,
        owner=principal.name,
    )
    if question is not None:
        questions.answer(question.id, saved)
    return saved


JOB_ID = Query("job_id", {"type": "string"}, "Only those about images of this job")


@get(
    "/evaluations",
    operation_class=doc("List A/B preferences", returns=shapes.EvaluationList, errors=(400,), query=(JOB_ID, *PAGE)),
)
async def list_evaluations(
    request: Request, evaluations: NamedDependency[EvaluationStore], storage: NamedDependency[Storage]
) -> Response:
    q = request.query_params
    limit = _int(q.get("limit"), "limit", 50, 1, 1000)
    offset = _int(q.get("offset"), "offset", 0, 0, 10**9)
    scope = principal_of(request).scope
    rows = evaluations.list(job_id=q.get("job_id") or None, limit=limit + 1, offset=offset, owner=scope)
    return json_response({"object": "list", "data": storage.sign_tree(rows[:limit]), "has_more": len(rows) > limit})


@post(
    "/evaluations",
    status_code=201,
    operation_class=doc(
        "Record an A/B preference, or answer a job's question",
        body=EvaluationRequest,
        returns=shapes.Evaluation,
        status=201,
        errors=(*BODY_ERRORS, 404, 409),
    ),
)
async def create_evaluation(
    request: Request,
    bodies: NamedDependency[BodyReader],
    runner: NamedDependency[JobRunner],
    evaluations: NamedDependency[EvaluationStore],
    questions: NamedDependency[Questions],
) -> Response:
    req = await bodies.decode(request, EvaluationRequest)
    body = record(runner, evaluations, questions, req, "api", principal_of(request))
    return json_response(runner.services.storage.sign_tree(body), status_code=201)


@get(
    "/evaluations/questions",
    operation_class=doc("Pairs running jobs wait on a person for", returns=shapes.QuestionList, query=(JOB_ID,)),
)
async def list_questions(
    request: Request,
    questions: NamedDependency[Questions],
    storage: NamedDependency[Storage],
    runner: NamedDependency[JobRunner],
) -> Response:
    job_id = request.query_params.get("job_id") or None
    pending = own_questions(runner, questions, principal_of(request).scope, job_id)
    data = storage.sign_tree([q.view() for q in pending])
    return json_response({"object": "list", "data": data})


def export_response(store: EvaluationStore, owner: str | None) -> Stream:
    return Stream(
        export_jsonl(store, owner),
        media_type="application/jsonl",
        headers={"content-disposition": 'attachment; filename="evaluations.jsonl"'},
    )


@get(
    "/evaluations/export",
    operation_class=doc("Every A/B preference as JSON lines, oldest first", media_type="application/jsonl"),
)
async def export_evaluations(request: Request, evaluations: NamedDependency[EvaluationStore]) -> Stream:
    return export_response(evaluations, principal_of(request).scope)


ROUTES = [list_evaluations, create_evaluation, export_evaluations, list_questions]
