"""Live pages over SSE: the job runner's events, turned into HTML fragments that htmx swaps in.

A page connects once (``sse-connect``); each message is named for the region it replaces
(``sse-swap``). The events only wake the stream: what is sent is rendered from the store, so a
burst of events becomes one update (the job runner's one subscription gathers them for
``COALESCE_S``) and a dropped event loses nothing. A job's stream sends ``done`` after its final
state, and the page closes it (``sse-close``) instead of reconnecting. The streams only watch:
they end when the daemon's shutdown begins, and the page reconnects to the next daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage
from loom.sdk.errors import InvalidRequest

from ..api.jobs import job_of
from ..jobs.hub import Subscriber
from ..jobs.runner import JobRunner
from ..jobs.store import TERMINAL
from ..principals import principal_of
from ..questions import Questions
from ..shutdown import Shutdown
from .jobs import job_context, job_rows, layout_of, lineage_context, list_filter
from .render import fragment

COALESCE_S = 0.2
#: With nothing happening, the page is rendered again this often (which keeps the connection alive).
KEEPALIVE_S = 15.0

Render = Callable[[], list[ServerSentEventMessage]]


async def stream(
    sub: Subscriber, render: Render, finished: Callable[[], bool]
) -> AsyncIterator[ServerSentEventMessage]:
    try:
        # The first render brings a page older than the stream up to date. ``finished`` is read
        # before rendering, so the last render shows the final state.
        while True:
            done = finished()
            for message in render():
                yield message
            if done:
                yield ServerSentEventMessage(event="done", data="done")
                return
            if await sub.gather(KEEPALIVE_S, COALESCE_S) is None:  # the daemon is stopping
                return
    finally:
        sub.close()


@get("/jobs/live")
async def jobs_live(
    request: Request, runner: NamedDependency[JobRunner], shutdown: NamedDependency[Shutdown]
) -> ServerSentEvent:
    """The job list's rows, for every change of any job."""
    states = list_filter(request)
    owner = principal_of(request).scope
    sub = runner.hub.subscriber()
    sub.watch_all()

    def render() -> list[ServerSentEventMessage]:
        html = fragment(request, "_job_rows.html", jobs=job_rows(runner, states, owner))
        return [ServerSentEventMessage(event="rows", data=html)]

    return live(shutdown, stream(sub, render, lambda: False))


@get("/jobs/{job_id:str}/live")
async def job_live(
    request: Request,
    job_id: FromPath[str],
    runner: NamedDependency[JobRunner],
    questions: NamedDependency[Questions],
    shutdown: NamedDependency[Shutdown],
) -> ServerSentEvent:
    """One job: ``?view=job`` sends ``head``, ``stages`` and ``outputs``; ``?view=lineage``
    sends ``head`` and ``lineage``."""
    job_of(request, runner, job_id)
    view = request.query_params.get("view", "job")
    if view not in ("job", "lineage"):
        raise InvalidRequest(f"view must be 'job' or 'lineage', got {view!r}", param="view")
    layout = layout_of(request)
    sub = runner.hub.subscriber()
    # Before the first render, so nothing falls between the two; the events so far are in it.
    sub.watch(job_id, after=runner.store.last_event_id(job_id))

    def render() -> list[ServerSentEventMessage]:
        if view == "lineage":
            ctx = lineage_context(runner, job_id, layout)
            parts = [("head", "_lineage_head.html"), ("lineage", "_lineage_tree.html")]
        else:
            ctx = job_context(runner, questions, job_id)
            parts = [("head", "_job_head.html"), ("stages", "_job_stages.html"), ("outputs", "_job_outputs.html")]
        return [ServerSentEventMessage(event=name, data=fragment(request, tpl, **ctx)) for name, tpl in parts]

    def finished() -> bool:
        job = runner.store.get_job(job_id)
        return job is None or job["state"] in TERMINAL

    return live(shutdown, stream(sub, render, finished))


def live(shutdown: Shutdown, messages: AsyncIterator[ServerSentEventMessage]) -> ServerSentEvent:
    """The SSE response of a live page: it ends when shutdown begins."""
    return ServerSentEvent(shutdown.until(messages), headers={"cache-control": "no-cache"})


ROUTES = [jobs_live, job_live]
