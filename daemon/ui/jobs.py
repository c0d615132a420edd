"""Job pages: the list, one job (stages, steps, outputs), its lineage, cancel and resume, and the
data dir's public files behind the UI's session.

Pages read the job runner in-process and show what the API shows (``job_view`` is the API's own
view of a job); they are complete without JavaScript, and ``live.py`` keeps them current. As in
the API, a user sees and acts on its own jobs only (another's is a 404); an admin sees all.
"""

from __future__ import annotations

import itertools
import mimetypes
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import File, Redirect
from loom.sdk.errors import InvalidRequest, NotFound

from ..api.jobs import job_of, job_view
from ..files import FileStore
from ..jobs.lineage import build_tree
from ..jobs.runner import JobRunner
from ..jobs.store import RESUMABLE, STATES, TERMINAL
from ..principals import may_read_file, principal_of
from ..questions import Questions
from .render import page

LIST_LIMIT = 50
#: Fields of a lineage node the lineage page lays out itself; any others are listed as they come.
NODE_FIELDS = frozenset(
    {
        "id",
        "parent",
        "iteration",
        "ranked_in",
        "index",
        "dimension",
        "what",
        "how",
        "combined",
        "critique",
        "description",
        "image",
        "image_url",
        "clip",
        "aesthetic",
        "alignment",
        "score",
        "status",
        "kept_in",
        "rank",
        "winner",
        "children",
        "error",
        "comparisons",
        "global_rank",
    }
)


def list_filter(request: Request) -> list[str] | None:
    state = request.query_params.get("state") or ""
    states = [s for s in state.split(",") if s]
    for s in states:
        if s not in STATES:
            raise InvalidRequest(f"unknown state {s!r} (states: {', '.join(STATES)})", param="state")
    return states or None


def job_rows(runner: JobRunner, states: list[str] | None, owner: str | None) -> list[dict[str, Any]]:
    rows = runner.store.list_jobs(states=states, limit=LIST_LIMIT, owner=owner)
    return [job_view(runner, r, detail=False) for r in rows]


def stages_of(runner: JobRunner, job_id: str, finished_at: float | None = None) -> list[dict[str, Any]]:
    """The stages a job went through, from its progress events: consecutive reports of one stage
    are one row (the last message and progress). A stage runs from its first report until the next
    stage's first report, the last one until the job finished (``took`` is None while it runs):
    a pipeline often reports a stage once, when it starts, so first-to-last report would be 0."""
    stages: list[dict[str, Any]] = []
    for event in runner.store.events_after(job_id, 0):
        if event.type != "progress":
            continue
        stage = event.data.get("stage") or ""
        if stages and stages[-1]["stage"] == stage:
            row = stages[-1]
        else:
            row = {"stage": stage, "started": event.created_at, "message": ""}
            stages.append(row)
        row.update(last=event.created_at, progress=event.data.get("progress"))
        row["message"] = event.data.get("message") or row["message"]
    for row, following in itertools.pairwise(stages):
        row["took"] = following["started"] - row["started"]
    if stages:
        stages[-1]["took"] = None if finished_at is None else max(0.0, finished_at - stages[-1]["started"])
    return stages


def latest_preview(runner: JobRunner, job_id: str) -> dict[str, Any] | None:
    """The job's latest image preview (a ``preview`` event's data and its id), or None."""
    event = runner.store.last_event_of(job_id, "preview")
    return None if event is None else {**event.data, "id": event.id}


def job_context(runner: JobRunner, questions: Questions, job_id: str) -> dict[str, Any]:
    """Everything the job page and its live fragments show."""
    job = job_view(runner, runner.get(job_id))
    images = [a for a in job["artifacts"] if a["media_type"].startswith("image/")]
    others = [a for a in job["artifacts"] if not a["media_type"].startswith("image/")]
    active = runner.is_active(job_id) or job["state"] not in TERMINAL
    return {
        "job": job,
        "active": active,
        "preview": latest_preview(runner, job_id) if active else None,
        "resumable": job["state"] in RESUMABLE and not runner.is_active(job_id),
        "stages": stages_of(runner, job_id, job.get("finished_at")),
        "steps": runner.store.steps(job_id),
        "images": images,
        "files": others,
        "has_lineage": bool(runner.store.lineage(job_id)),
        "questions": [q.view() for q in questions.pending(job_id)],
    }


#: How the lineage page lays candidates out: the detailed tree, or a compact grid per iteration.
LAYOUTS = ("tree", "grid")


def layout_of(request: Request) -> str:
    layout = request.query_params.get("layout") or "tree"
    if layout not in LAYOUTS:
        raise InvalidRequest(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}", param="layout")
    return layout


def lineage_context(runner: JobRunner, job_id: str, layout: str = "tree") -> dict[str, Any]:
    raw = runner.get(job_id)
    job = job_view(runner, raw, detail=False)
    given = raw.get("params")
    params = given if isinstance(given, dict) else {}
    nodes = runner.store.lineage(job_id)
    tree = build_tree(nodes)
    iterations = sorted({n["iteration"] for n in nodes if isinstance(n.get("iteration"), int)})
    return {
        "job": job,
        "active": runner.is_active(job_id) or job["state"] not in TERMINAL,
        "roots": tree["roots"],
        "winner": tree["winner"],
        "path": tree["path"],
        "count": len(nodes),
        "iterations": iterations,
        "node_fields": NODE_FIELDS,
        "prompt": params.get("prompt"),
        "layout": layout,
        "by_iteration": [
            (k, sorted((n for n in nodes if n.get("iteration") == k), key=lambda n: n.get("index") or 0))
            for k in iterations
        ],
    }


@get("/", name="ui-home")
async def home(request: Request, runner: NamedDependency[JobRunner]) -> Response:
    states = list_filter(request)
    return page(
        request,
        "jobs.html",
        jobs=job_rows(runner, states, principal_of(request).scope),
        state=",".join(states or []),
        states=STATES,
        pipelines=sorted(runner.pipelines),
    )


@get("/jobs/{job_id:str}")
async def job_page(
    request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner], questions: NamedDependency[Questions]
) -> Response:
    job_of(request, runner, job_id)
    return page(request, "job.html", **job_context(runner, questions, job_id))


@get("/jobs/{job_id:str}/lineage")
async def lineage_page(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    job_of(request, runner, job_id)
    return page(request, "lineage.html", **lineage_context(runner, job_id, layout_of(request)))


@post("/jobs/{job_id:str}/cancel")
async def cancel(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    job_of(request, runner, job_id)
    await runner.cancel(job_id)
    return Redirect(f"/ui/jobs/{job_id}", status_code=303)


@post("/jobs/{job_id:str}/resume")
async def resume(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    job_of(request, runner, job_id)
    runner.resume(job_id)
    return Redirect(f"/ui/jobs/{job_id}", status_code=303)


@get("/files/{path:path}")
async def serve_file(
    request: Request, path: FromPath[str], files: NamedDependency[FileStore], runner: NamedDependency[JobRunner]
) -> File:
    rel = path.lstrip("/")
    if not may_read_file(principal_of(request), rel, runner.store.owner_of_output):
        raise NotFound(f"No file at '{rel}'", param="path")
    file = files.resolve(rel)
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return File(path=file, media_type=media_type, content_disposition_type="inline")


ROUTES = [home, job_page, lineage_page, cancel, resume, serve_file]
