"""Pipelines and jobs: start, list, inspect, cancel, resume; events over SSE and a WebSocket.

- ``POST /v1/pipelines/{name}``: the body is the pipeline's ``Params``, decoded strictly (an
  unknown field is a 400 naming it); answers 202 with the job. ``?wait=SECONDS`` (or the header
  ``Prefer: wait=SECONDS``) holds the answer until the job ends, at most that long (and at most
  ``MAX_WAIT``): 200 with the finished job, else 202 with the job as it is. ``X-<name>-API-Key``
  headers are upstream keys for the job's own calls (see ``loom.daemon.credentials``).
  ``?priority=N`` (-100..100, default 0): among queued jobs, a higher priority runs first. A job
  waits ``queued`` (its ``position`` shown) until the budget of running jobs has room; when the
  queued jobs of the caller's key (or of everyone) are at their bound (``[jobs] max_queued_per_owner``,
  ``max_queued``), the answer is 429 with ``Retry-After`` and nothing is accepted.
- ``GET /v1/pipelines``: every pipeline with the JSON schema of its parameters.
- ``GET /v1/jobs`` (``state``, ``pipeline``, ``since``, ``until``, ``limit``, ``offset``),
  ``GET /v1/jobs/{id}``, ``POST /v1/jobs/{id}/cancel``, ``POST /v1/jobs/{id}/resume``,
  ``GET /v1/jobs/{id}/lineage``.
- ``GET /v1/jobs/{id}/events``: SSE; each event's ``id`` is its per-job sequence number, so a
  client reconnecting with ``Last-Event-ID`` (or ``?after=N``) gets exactly what it missed. The
  stream ends after the job's final ``state`` event.
- ``/v1/ws``: one WebSocket for many jobs (protocol in :func:`ws`).

A job is its submitter's (``principals``): a user key lists, reads, follows, cancels and resumes
its own jobs only, and another's id is a 404 as if there were no such job; an admin's sees all.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage
from loom.sdk.errors import InvalidRequest, ModelNotFound, UnsupportedParameter
from loom.sdk.suggest import did_you_mean

from .. import credentials as upstream_keys
from ..config import Routes
from ..http.body import BodyReader
from ..http.errors import validation_error
from ..jobs.hub import Subscriber
from ..jobs.keys_needed import require_keys
from ..jobs.lineage import build_tree
from ..jobs.runner import JobRunner, PipelineInfo
from ..jobs.store import STATES, TERMINAL, Event
from ..models import ModelRegistry
from ..principals import principal_of
from ..routing import ModelRouter
from ..shutdown import Shutdown
from . import shapes
from .auth import accept
from .openapi import BODY_ERRORS, TOKEN, Query, doc
from .respond import json_response

#: A time filter: unix seconds, or an ISO 8601 date or time (one pattern, not anyOf, so a value
#: that fits either is valid to a fuzzer too).
TIME = {
    "type": "string",
    "pattern": r"^([0-9]{1,10}(\.[0-9]{1,6})?"
    r"|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"([Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?)$",
}
PAGE = (
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most this many (default 50)"),
    Query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "Skip this many"),
)
JOB_QUERY = (
    Query("state", {"enum": list(STATES)}, "Only jobs in this state (repeat it, or separate states by commas)"),
    Query("pipeline", {"type": "string"}, "Only jobs of this pipeline"),
    Query("since", TIME, "Created at or after (unix seconds or ISO 8601)"),
    Query("until", TIME, "Created before"),
    *PAGE,
)


class PipelineParams(msgspec.Struct):
    """The pipeline's own parameters; ``GET /v1/pipelines`` gives each pipeline's schema. An
    unknown field is refused naming it."""


PRIORITY = Query(
    "priority", {"type": "integer", "minimum": -100, "maximum": 100}, "Among queued jobs, higher runs first (default 0)"
)
KEEPALIVE_S = 15.0
#: The longest a submission may wait for its job (``?wait=`` / ``Prefer: wait=``), seconds.
MAX_WAIT = 600.0
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


def job_view(runner: JobRunner, job: dict, *, detail: bool = True) -> dict[str, Any]:
    """A job as the API shows it: its file URLs (artefacts, and ``/v1/files/`` URLs in its result)
    signed or presigned for ``[storage] url_ttl``; ``output_url`` names the folder."""
    storage = runner.services.storage
    steps, step_seconds = runner.store.step_stats(job["id"])
    usage = job.get("usage") or {}
    timings = job.get("timings") or {}
    now = time.time()
    view: dict[str, Any] = {
        "id": job["id"],
        "object": "job",
        "pipeline": job["pipeline"],
        "state": job["state"],
        "stage": job["stage"],
        "progress": round(job["progress"] or 0.0, 2),
        "message": job["message"],
        "created_at": job["created_at"],
        "started_at": job["started_at"],
        "finished_at": job["finished_at"],
        "attempts": job["attempts"],
        "output_dir": job["output_dir"],
        "output_url": f"/v1/files/{job['output_dir']}/",
        "error": job["error"],
        # The names of the upstream key headers a resume needs again (never the keys).
        "upstream_keys": job.get("upstream_keys") or [],
        "priority": job.get("priority") or 0,
        # Where a queued job stands among the queued (1: it starts next); None once it runs.
        "position": runner.position(job["id"]) if job["state"] == "queued" else None,
    }
    if not detail:
        return view
    started = job["started_at"]
    end = job["finished_at"] or (now if runner.is_active(job["id"]) else job["updated_at"])
    view.update(
        params=job["params"],
        result=storage.sign_tree(job["result"]),
        timings={
            "queued_seconds": round(started - job["created_at"], 4) if started else None,
            "elapsed_seconds": round(end - job["created_at"], 4),
            "run_seconds": timings.get("run_seconds", 0.0),
            "steps": steps,
            "step_seconds": round(step_seconds, 4),
            "by_capability": usage.get("by_capability", {}),
        },
        usage={
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "by_model": usage.get("by_model", {}),
        },
        artifacts=[{**a, "url": storage.url(a["path"])} for a in runner.store.artifacts(job["id"])],
        last_event_id=runner.store.last_event_id(job["id"]),
    )
    return view


# --- pipelines ----------------------------------------------------------------------------------


@get("/pipelines", operation_class=doc("List the pipelines", returns=shapes.PipelineList))
async def list_pipelines(runner: NamedDependency[JobRunner]) -> Response:
    data = [
        {
            "name": p.name,
            "object": "pipeline",
            "plugin": p.plugin,
            "description": p.description,
            "params_schema": msgspec.json.schema(p.cls.Params),
        }
        for p in sorted(runner.pipelines.values(), key=lambda p: p.name)
        if not p.hidden
    ]
    return json_response({"object": "list", "data": data})


def check_models(registry, params) -> None:
    """Model ids named in the parameters (``model`` or ``*_model`` fields) must exist, so a typo
    is a 404 at submit rather than a failed job later."""
    for f in msgspec.structs.fields(type(params)):
        value = getattr(params, f.name)
        if (f.name == "model" or f.name.endswith("_model")) and isinstance(value, str):
            try:
                registry.get(value)
            except ModelNotFound as e:
                raise ModelNotFound(e.message, param=f.encode_name) from None


def decode_params(info: PipelineInfo, body: bytes) -> msgspec.Struct:
    """A pipeline's ``Params`` from a JSON body, strictly (the web UI's form decodes through here too)."""
    fields = [f.encode_name for f in msgspec.structs.fields(info.cls.Params)]
    try:
        params = msgspec.json.decode(body, type=info.cls.Params)
        # Strict even for a third party's Params that forgot forbid_unknown_fields.
        unknown = sorted(set(msgspec.json.decode(body)) - set(fields))
    except msgspec.MsgspecError as e:
        error = validation_error(e)
        if error.code != "unsupported_parameter" or not error.param or "." in error.param:
            raise error from None
        unknown = [error.param]
    if unknown:
        name = unknown[0]
        hint = did_you_mean(name, fields) or f" (its parameters: {', '.join(sorted(fields))})"
        raise UnsupportedParameter(f"Unknown parameter '{name}' for pipeline '{info.name}'{hint}", param=name)
    return params


@post(
    "/pipelines/{name:str}",
    status_code=202,
    operation_class=doc(
        "Start a job",
        body=PipelineParams,
        returns=shapes.Job,
        status=202,
        errors=(*BODY_ERRORS, 401, 404, 429),
        headers={"Location": "The job's URL"},
        query=(PRIORITY,),
    ),
)
async def start_pipeline(
    request: Request,
    name: FromPath[str],
    runner: NamedDependency[JobRunner],
    registry: NamedDependency[ModelRegistry],
    bodies: NamedDependency[BodyReader],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
) -> Response:
    info = runner.pipeline(name)
    body = (await bodies.read(request)).strip() or b"{}"
    params = decode_params(info, body)
    check_models(registry, params)
    keys = upstream_keys.from_headers(request.headers)
    require_keys(info.cls, params, keys, registry, router, routes)  # seed 004: 401 missing, 400 malformed
    wait, preferred = requested_wait(request)
    priority = _int(request.query_params.get("priority"), "priority", 0, -100, 100)
    job = runner.submit(name, params, keys, owner=owner_of(request), priority=priority)
    headers = {"Location": f"/v1/jobs/{job['id']}"}
    if wait:
        job = await runner.wait(job["id"], wait)
        if preferred:
            headers["Preference-Applied"] = f"wait={preferred}"
    status = 200 if job["state"] in TERMINAL else 202
    return json_response(job_view(runner, job), status_code=status, headers=headers)


def owner_of(request: Request) -> str:
    """Who a request acts for, as stored things name their owner: its principal's name (what
    it makes is that principal's; its queued jobs count among that principal's)."""
    return principal_of(request).name


def job_of(request: Request | WebSocket, runner: JobRunner, job_id: str) -> dict:
    """The job if the request's principal may see it; NotFound (as for no such job) otherwise."""
    return runner.get(job_id, owner=principal_of(request).scope)


def requested_wait(request: Request) -> tuple[float, str | None]:
    """Seconds to hold the answer (``?wait=`` wins over ``Prefer: wait=``), capped at MAX_WAIT;
    and the Prefer value to echo in ``Preference-Applied``."""
    query = request.query_params.get("wait")
    if query is not None:
        try:
            seconds = float(query)
        except ValueError:
            raise InvalidRequest(f"wait must be a number of seconds, got {query!r}", param="wait") from None
        if not 0 <= seconds <= MAX_WAIT:
            raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT:g} seconds", param="wait")
        return seconds, None
    m = _PREFER_WAIT.search(request.headers.get("prefer") or "")
    if m is None:
        return 0.0, None
    seconds = min(float(m.group(1)), MAX_WAIT)
    return seconds, f"{seconds:g}"


# --- jobs ---------------------------------------------------------------------------------------


def _time(value: str | None, param: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidRequest(f"{param} must be unix seconds or an ISO 8601 time, got {value!r}", param=param) from None


def _int(value: str | None, param: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidRequest(f"{param} must be an integer, got {value!r}", param=param) from None
    if not lo <= n <= hi:
        raise InvalidRequest(f"{param} must be between {lo} and {hi}", param=param)
    return n


@get("/jobs", operation_class=doc("List jobs", returns=shapes.JobList, errors=(400,), query=JOB_QUERY))
async def list_jobs(request: Request, runner: NamedDependency[JobRunner]) -> Response:
    q = request.query_params
    states = [s for part in q.getall("state", []) for s in part.split(",")]
    for s in states:
        if s not in STATES:
            raise InvalidRequest(f"unknown state {s!r} (states: {', '.join(STATES)})", param="state")
    limit = _int(q.get("limit"), "limit", 50, 1, 1000)
    offset = _int(q.get("offset"), "offset", 0, 0, 10**9)
    rows = runner.store.list_jobs(
        states=states or None,
        pipeline=q.get("pipeline") or None,
        since=_time(q.get("since"), "since"),
        until=_time(q.get("until"), "until"),
        limit=limit + 1,
        offset=offset,
        owner=principal_of(request).scope,
    )
    data = [job_view(runner, r, detail=False) for r in rows[:limit]]
    return json_response({"object": "list", "data": data, "has_more": len(rows) > limit})


@get("/jobs/{job_id:str}", operation_class=doc("One job", returns=shapes.Job, errors=(404,)))
async def get_job(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    return json_response(job_view(runner, job_of(request, runner, job_id)))


@post(
    "/jobs/{job_id:str}/cancel",
    status_code=200,
    operation_class=doc("Cancel a job", returns=shapes.Job, errors=(404, 409)),
)
async def cancel_job(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    job_of(request, runner, job_id)
    job = await runner.cancel(job_id)
    return json_response(job_view(runner, job))


@post(
    "/jobs/{job_id:str}/resume",
    status_code=202,
    operation_class=doc("Resume a job", returns=shapes.Job, status=202, errors=(404, 409)),
)
async def resume_job(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    job_of(request, runner, job_id)
    job = runner.resume(job_id, upstream_keys.from_headers(request.headers))
    return json_response(job_view(runner, job), status_code=202)


@get("/jobs/{job_id:str}/lineage", operation_class=doc("A job's lineage", returns=shapes.Lineage, errors=(404,)))
async def job_lineage(request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner]) -> Response:
    job = job_of(request, runner, job_id)
    nodes = runner.store.lineage(job_id)
    tree = build_tree(nodes)
    body = {
        "object": "lineage",
        "job_id": job_id,
        "state": job["state"],
        "winner": tree["winner"],
        "path": tree["path"],
        "nodes": nodes,
        "tree": tree["roots"],
    }
    return json_response(runner.services.storage.sign_tree(body))


# --- events -------------------------------------------------------------------------------------


def event_json(event: Event) -> bytes:
    return msgspec.json.encode(event)


def signed_event(runner: JobRunner, event: Event) -> Event:
    """``event`` with the ``/v1/files/`` URLs in its data signed as they are sent (a lineage
    node's ``image_url``), so a page following a job can show its images in ``<img>``."""
    return msgspec.structs.replace(event, data=runner.services.storage.sign_tree(event.data))


def _is_final(event: Event) -> bool:
    return event.type == "state" and event.data.get("state") in TERMINAL


@get(
    "/jobs/{job_id:str}/events",
    opt={"browser": True},
    operation_class=doc(
        "A job's events",
        events=shapes.JobEvent,
        errors=(400, 404),
        query=(
            Query(
                "Last-Event-ID", {"type": "string", "pattern": "^[0-9]{0,15}$"}, "Resume after this event id", "header"
            ),
            Query("after", {"type": "string", "pattern": "^[0-9]{0,15}$"}, "Resume after this event id"),
            TOKEN,
        ),
    ),
)
async def job_events(
    request: Request, job_id: FromPath[str], runner: NamedDependency[JobRunner], shutdown: NamedDependency[Shutdown]
) -> ServerSentEvent:
    job_of(request, runner, job_id)
    header = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        after = max(0, int(header))
    except ValueError:
        raise InvalidRequest(f"Last-Event-ID must be an event id (an integer), got {header!r}") from None
    # It only watches: it ends when shutdown begins (the client reconnects with Last-Event-ID).
    return ServerSentEvent(shutdown.until(_sse(runner, job_id, after)), headers={"x-loom-job": job_id})


async def _sse(runner: JobRunner, job_id: str, after: int) -> AsyncIterator[ServerSentEventMessage]:
    sub = runner.hub.subscriber()
    sub.watch(job_id, after)
    try:
        job = runner.store.get_job(job_id)
        # Finished and everything sent: the final state event is always a job's last event.
        if job is None or (job["state"] in TERMINAL and after >= runner.store.last_event_id(job_id)):
            return
        while True:
            try:
                events = await sub.next(KEEPALIVE_S)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if events is None:  # daemon shutting down
                return
            assert isinstance(events, list), "this subscriber queues no messages of its own (say)"
            for event in events:
                data = event_json(signed_event(runner, event)).decode()
                yield ServerSentEventMessage(data=data, event=event.type, id=event.id)
                # A final state ends the stream unless the job went on after it (a job resumed
                # after it was interrupted, failed or cancelled): then its next run follows.
                if _is_final(event) and event.id >= runner.store.last_event_id(job_id):
                    return
    finally:
        sub.close()


@websocket("/ws", opt={"browser": True})
async def ws(socket: WebSocket, runner: NamedDependency[JobRunner]) -> None:
    """One connection, many jobs. The client sends JSON commands:

    - ``{"op": "subscribe", "jobs": ["<id>", ...], "after": {"<id>": <event id>}}``: replays each
      job's events after the given id (all of them by default), then streams new ones;
    - ``{"op": "unsubscribe", "jobs": [...]}``; ``{"op": "ping"}``.

    The server sends ``{"op": "subscribed", "job_id", "state", "last_event_id"}`` per job, each
    event as ``{"op": "event", "job_id", "id", "type", "data", "created_at"}`` (ids increase per
    job), ``{"op": "error", "message", "job_id"?}`` for a bad command or unknown job, and
    ``{"op": "pong"}``.
    """
    await accept(socket)
    sub = runner.hub.subscriber()
    scope = principal_of(socket).scope  # a user follows its own jobs only

    send_later = sub.say

    async def receiver() -> None:
        while True:
            try:
                message = await socket.receive_json()
            except (WebSocketDisconnect, msgspec.DecodeError, ValueError) as e:
                if isinstance(e, WebSocketDisconnect):
                    return
                send_later({"op": "error", "message": "commands must be JSON objects"})
                continue
            op = message.get("op") if isinstance(message, dict) else None
            jobs = (message.get("jobs") or message.get("job") or []) if op else []
            jobs = [jobs] if isinstance(jobs, str) else list(jobs) if isinstance(jobs, list) else []
            if op == "subscribe":
                after = message.get("after") or {}
                for job_id in jobs:
                    after_id = after.get(job_id, 0) if isinstance(after, dict) else 0
                    _subscribe(runner, sub, str(job_id), after_id, scope)
            elif op == "unsubscribe":
                for job_id in jobs:
                    sub.unwatch(str(job_id))
                    send_later({"op": "unsubscribed", "job_id": job_id})
            elif op == "ping":
                send_later({"op": "pong"})
            else:
                send_later({"op": "error", "message": f"unknown op {op!r} (subscribe, unsubscribe, ping)"})

    async def sender() -> None:
        while True:
            delivery = await sub.next()
            if delivery is None:
                return
            if isinstance(delivery, dict):
                await socket.send_json(delivery)
                continue
            for event in delivery:
                await socket.send_json({"op": "event", **msgspec.to_builtins(signed_event(runner, event))})

    tasks = [asyncio.create_task(receiver()), asyncio.create_task(sender())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sub.close()
        try:
            await socket.close()
        except Exception:  # already closed by the client
            pass


def _subscribe(runner: JobRunner, sub: Subscriber, job_id: str, after: Any, owner: str | None) -> None:
    job = runner.store.get_job(job_id)
    if job is None or (owner is not None and (job.get("owner") or "") != owner):
        sub.say({"op": "error", "job_id": job_id, "message": f"No job with id '{job_id}'"})
        return
    try:
        after = max(0, int(after))
    except (TypeError, ValueError):
        after = 0
    subscribed = {
        "op": "subscribed",
        "job_id": job_id,
        "state": job["state"],
        "last_event_id": runner.store.last_event_id(job_id),
    }
    sub.watch(job_id, after, announce=subscribed)


ROUTES = [
    list_pipelines,
    start_pipeline,
    list_jobs,
    get_job,
    cancel_job,
    resume_job,
    job_lineage,
    job_events,
    ws,
]
