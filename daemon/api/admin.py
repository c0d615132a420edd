"""/admin for the scheduler: its state, explicit residency, cancelling work, its event stream, and
Prometheus ``/metrics``.

Paths here are relative to the ``/admin`` Router (``app.py``), whose one guard makes every route
need an admin key when keys are configured, ``/metrics`` included (a scraper sends
``Authorization: Bearer <key>``): model names, queue depths and memory are operational detail.

- ``GET /admin/scheduler``: devices (budget, used, free), resident models, queues, running work.
- ``POST /admin/models/{id}/load`` | ``/unload`` | ``/pin`` (``{"pinned": bool}``, default true).
- ``POST /admin/work/{id}/cancel``: cancel queued or running work by its id.
- ``GET /admin/events``: scheduler events as SSE (``event:`` is the type, ``data:`` the JSON).
- ``WS /admin/ws``: a ``snapshot`` message, then the same events as JSON text messages.
- ``GET /metrics``: the scheduler's Prometheus registry.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from litestar import Request, Response, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage
from loom.sdk.errors import NotFound
from msgspec import Struct

from ..http.body import BodyReader
from ..http.errors import validation_error
from ..models import ModelRegistry
from ..scheduler import Scheduler
from ..shutdown import Shutdown
from . import shapes
from .auth import accept
from .openapi import BODY_ERRORS, TOKEN, doc
from .respond import json_response

#: An SSE comment this often keeps proxies from closing an idle stream and notices gone clients.
KEEPALIVE_S = 15.0


class PinRequest(Struct, forbid_unknown_fields=True):
    pinned: bool = True


@get("/scheduler", operation_class=doc("The scheduler's state", returns=shapes.SchedulerState))
async def scheduler_state(scheduler: NamedDependency[Scheduler]) -> Response:
    return json_response(scheduler.snapshot())


@post(
    "/models/{model_id:str}/load",
    status_code=200,
    operation_class=doc("Load a model now", returns=shapes.ModelState, errors=(404, 502, 503)),
)
async def load_model(
    model_id: FromPath[str], registry: NamedDependency[ModelRegistry], scheduler: NamedDependency[Scheduler]
) -> Response:
    entry = registry.get(model_id)
    await scheduler.load(entry)
    return json_response(scheduler.model_state(entry))


@post(
    "/models/{model_id:str}/unload",
    status_code=200,
    operation_class=doc("Unload a model", returns=shapes.Unloaded, errors=(404,)),
)
async def unload_model(
    model_id: FromPath[str], registry: NamedDependency[ModelRegistry], scheduler: NamedDependency[Scheduler]
) -> Response:
    entry = registry.get(model_id)
    unloaded = await scheduler.unload(entry)
    return json_response({**scheduler.model_state(entry), "unloaded": unloaded})


@post(
    "/models/{model_id:str}/pin",
    status_code=200,
    operation_class=doc(
        "Pin or unpin a model",
        body=PinRequest,
        body_optional=True,
        returns=shapes.ModelState,
        errors=(*BODY_ERRORS, 404, 502, 503),
    ),
)
async def pin_model(
    request: Request,
    model_id: FromPath[str],
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    scheduler: NamedDependency[Scheduler],
) -> Response:
    entry = registry.get(model_id)
    body = await bodies.read(request)
    try:
        req = msgspec.json.decode(body, type=PinRequest) if body.strip() else PinRequest()
    except msgspec.MsgspecError as e:
        raise validation_error(e) from None
    return json_response(await scheduler.pin(entry, req.pinned))


@post(
    "/work/{work_id:str}/cancel",
    status_code=200,
    operation_class=doc("Cancel queued or running work", returns=shapes.WorkCancelled, errors=(404,)),
)
async def cancel_work(work_id: FromPath[str], scheduler: NamedDependency[Scheduler]) -> Response:
    if not scheduler.cancel(work_id):
        raise NotFound(f"No queued or running work with id '{work_id}'")
    return json_response({"id": work_id, "cancelled": True})


@get(
    "/events",
    opt={"browser": True},
    operation_class=doc("The scheduler's events", events=shapes.SchedulerEvent, query=(TOKEN,)),
)
async def scheduler_events(
    scheduler: NamedDependency[Scheduler], shutdown: NamedDependency[Shutdown]
) -> ServerSentEvent:
    # Subscribe before answering, so nothing that happens after the response starts is missed.
    sub = scheduler.events.subscribe()

    async def stream():
        try:
            yield ServerSentEventMessage(data=None, comment="subscribed")
            while True:
                try:
                    event = await sub.get(timeout=KEEPALIVE_S)
                except StopAsyncIteration:
                    return
                if event is None:
                    yield ServerSentEventMessage(data=None, comment="keepalive")
                else:
                    yield ServerSentEventMessage(data=msgspec.json.encode(event).decode(), event=event["type"])
        finally:
            sub.close()

    # It only watches: it ends when shutdown begins rather than hold the daemon for the grace period.
    return ServerSentEvent(shutdown.until(stream()), headers={"cache-control": "no-cache"})


@websocket("/ws", opt={"browser": True})
async def scheduler_ws(socket: WebSocket, scheduler: NamedDependency[Scheduler]) -> None:
    sub = scheduler.events.subscribe()
    await accept(socket)

    async def send() -> None:
        await socket.send_text(msgspec.json.encode({"type": "snapshot", "scheduler": scheduler.snapshot()}).decode())
        async for event in sub:
            await socket.send_text(msgspec.json.encode(event).decode())

    async def receive() -> None:
        # Nothing is read from clients yet; reading notices a disconnect.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await socket.receive_data(mode="text")

    tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sub.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await socket.close()


@get("/metrics", operation_class=doc("Prometheus metrics", media_type="text/plain"))
async def metrics(scheduler: NamedDependency[Scheduler]) -> Response:
    """Served at ``/metrics`` (outside ``/admin``, where scrapers look), behind the same guard."""
    m = scheduler.metrics
    return Response(content=m.render(), media_type=m.content_type)


#: Mounted under ``/admin``; :func:`metrics` is mounted at the root by ``app.py``.
ROUTES = [
    scheduler_state,
    load_model,
    unload_model,
    pin_model,
    cancel_work,
    scheduler_events,
    scheduler_ws,
]
