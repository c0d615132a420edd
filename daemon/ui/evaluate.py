"""A/B evaluation (seed 004's evaluation page): two images for one prompt, a person picks one.

``/ui/evaluate/pair`` shows a pair: ``?job=J`` the next pair of J's candidates nobody has judged
(closest scores first: those are the pairs scores cannot settle), ``?job=J&a=X&b=Y`` that pair,
``?a_job=J1&b_job=J2`` the winners of two jobs, ``?question=Q`` a pair a running job waits on (a
person as the beam search's judge). The images are shown blind (no scores) and in a random
order. ``POST /ui/evaluate`` records the choice through the API's own ``record``; after a
question, ``/ui/evaluate/next`` follows the job to its next one.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Stream
from loom.sdk.errors import InvalidRequest

from ..api.evaluations import export_response, own_questions, record
from ..api.jobs import job_of, job_view
from ..evaluations import CHOICES, EvaluationRequest, EvaluationStore, Side, resolve_side
from ..jobs.runner import JobRunner
from ..jobs.store import TERMINAL
from ..principals import principal_of
from ..questions import Questions
from ..shutdown import Shutdown
from .live import live, stream
from .render import fragment, page, safe_next

RECENT = 20
#: How long ``/ui/evaluate/next`` waits for a job to ask its next question.
NEXT_WAIT_S = 3.0


def ranked_candidates(runner: JobRunner, job_id: str) -> list[dict[str, Any]]:
    """A job's candidates that have an image, best score first."""
    nodes = [n for n in runner.store.lineage(job_id) if n.get("image")]
    return sorted(nodes, key=lambda n: (n.get("score") is None, -(n.get("score") or 0.0)))


def next_pair(runner: JobRunner, judged: set[frozenset[str]], job_id: str) -> tuple[str, str] | None:
    """The unjudged pair of neighbours in the ranking, nearest neighbours first."""
    ids = [str(n["id"]) for n in ranked_candidates(runner, job_id)]
    for gap in range(1, len(ids)):
        for i in range(len(ids) - gap):
            if frozenset((ids[i], ids[i + gap])) not in judged:
                return ids[i], ids[i + gap]
    return None


@get("/evaluate")
async def evaluate_home(
    request: Request,
    runner: NamedDependency[JobRunner],
    evaluations: NamedDependency[EvaluationStore],
    questions: NamedDependency[Questions],
) -> Response:
    scope = principal_of(request).scope  # a user's own jobs and evaluations; an admin's all
    jobs = [job_view(runner, j, detail=False) for j in runner.store.list_jobs(limit=50, owner=scope)]
    return page(
        request,
        "evaluate.html",
        jobs=jobs,
        evaluations=evaluations.list(limit=RECENT, owner=scope),
        total=evaluations.count(scope),
        saved=request.query_params.get("saved"),
        questions=[q.view() for q in own_questions(runner, questions, scope)],
    )


@get("/evaluate/live")
async def evaluate_live(
    request: Request,
    runner: NamedDependency[JobRunner],
    questions: NamedDependency[Questions],
    shutdown: NamedDependency[Shutdown],
) -> ServerSentEvent:
    """The waiting questions, whenever a job asks or is answered (any job event wakes it)."""
    scope = principal_of(request).scope
    sub = runner.hub.subscriber()
    sub.watch_all()

    def render() -> list[ServerSentEventMessage]:
        pending = own_questions(runner, questions, scope)
        html = fragment(request, "_questions.html", questions=[q.view() for q in pending])
        return [ServerSentEventMessage(event="questions", data=html)]

    return live(shutdown, stream(sub, render, lambda: False))


@get("/evaluate/next")
async def next_question(
    request: Request, runner: NamedDependency[JobRunner], questions: NamedDependency[Questions]
) -> Response:
    """After answering a job's question: its next one as soon as the job asks it, else the
    evaluation page."""
    job_id = request.query_params.get("job") or ""
    saved = request.query_params.get("saved") or ""
    job_of(request, runner, job_id)
    sub = runner.hub.subscriber()
    # Asking emits a "question" event: wake on the job's events from now on.
    sub.watch(job_id, after=runner.store.last_event_id(job_id))
    try:
        deadline = time.monotonic() + NEXT_WAIT_S
        while True:
            pending = questions.pending(job_id)
            if pending:
                return Redirect(f"/ui/evaluate/pair?question={pending[0].id}&saved={saved}", status_code=303)
            job = runner.store.get_job(job_id)
            left = deadline - time.monotonic()
            if job is None or job["state"] in TERMINAL or left <= 0:
                return Redirect(f"/ui/evaluate?saved={saved}", status_code=303)
            try:
                if await sub.next(left) is None:  # the daemon is stopping
                    return Redirect(f"/ui/evaluate?saved={saved}", status_code=303)
            except TimeoutError:
                pass
    finally:
        sub.close()


@get("/evaluate/pair")
async def pair_page(
    request: Request,
    runner: NamedDependency[JobRunner],
    evaluations: NamedDependency[EvaluationStore],
    questions: NamedDependency[Questions],
) -> Response:
    q = request.query_params
    job_id = q.get("job") or None
    question = None
    scope = principal_of(request).scope
    if q.get("question"):
        question = questions.sides(q["question"])
        if question not in own_questions(runner, questions, scope, question.job_id):
            questions.sides("")  # another's question: as if it were not waiting
        job_id = question.job_id
        sides = [Side(job_id, question.a["candidate"]), Side(job_id, question.b["candidate"])]
        after = f"/ui/evaluate/next?job={job_id}"
    elif job_id:
        job_of(request, runner, job_id)
        a, b = q.get("a") or None, q.get("b") or None
        if (a is None) != (b is None):
            raise InvalidRequest("name both candidates (a and b) or neither", param="a" if a is None else "b")
        if a is None:
            pair = next_pair(runner, evaluations.judged_pairs(job_id), job_id)
            if pair is None:
                return page(request, "evaluate_done.html", job=job_view(runner, runner.get(job_id), detail=False))
            a, b = pair
        sides = [Side(job_id, a), Side(job_id, b)]
        after = f"/ui/evaluate/pair?job={job_id}"
    elif q.get("a_job") and q.get("b_job"):
        sides = [Side(q["a_job"]), Side(q["b_job"])]
        after = "/ui/evaluate"
    else:
        raise InvalidRequest("choose a job (job=...) or two jobs (a_job=...&b_job=...)", param="job")
    left, right = (resolve_side(runner, s, p, scope) for s, p in zip(sides, ("a", "b"), strict=True))
    if secrets.randbelow(2):  # blind: which side an image lands on says nothing
        left, right = right, left
    prompt = question.prompt if question else left["prompt"] if left["prompt"] == right["prompt"] else None
    return page(
        request,
        "evaluate_pair.html",
        left=left,
        right=right,
        prompt=prompt,
        after=after,
        question=question.view() if question else None,
        judged=len(evaluations.judged_pairs(job_id)) if job_id and not question else None,
        pairs=_pairs(len(ranked_candidates(runner, job_id))) if job_id and not question else None,
    )


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


@post("/evaluate")
async def choose(
    request: Request,
    runner: NamedDependency[JobRunner],
    evaluations: NamedDependency[EvaluationStore],
    questions: NamedDependency[Questions],
) -> Response:
    form = await request.form()

    def side(prefix: str) -> Side:
        job_id = str(form.get(f"{prefix}_job") or "")
        if not job_id:
            raise InvalidRequest(f"{prefix}_job is required", param=f"{prefix}_job")
        return Side(job_id, str(form.get(f"{prefix}_candidate") or "") or None)

    picked = str(form.get("choice") or "")
    choice = next((c for c in CHOICES if c == picked), None)
    if choice is None:
        raise InvalidRequest("choose one of the images, or 'tie'", param="choice")
    req = EvaluationRequest(
        a=side("a"),
        b=side("b"),
        choice=choice,
        reason=str(form.get("reason") or "") or None,
        question=str(form.get("question") or "") or None,
    )
    saved = record(runner, evaluations, questions, req, "ui", principal_of(request))
    after = safe_next(str(form.get("after") or ""))
    sep = "&" if "?" in after else "?"
    return Redirect(f"{after}{sep}saved={saved['id']}", status_code=303)


@get("/evaluations/export")
async def export(request: Request, evaluations: NamedDependency[EvaluationStore]) -> Stream:
    return export_response(evaluations, principal_of(request).scope)


ROUTES = [evaluate_home, evaluate_live, next_question, pair_page, choose, export]
