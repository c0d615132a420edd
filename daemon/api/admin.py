"""/admin for the scheduler: its state, explicit residency, cancelling work, its event stream, and
Prometheus ``/metrics``.

Every route needs an admin key when keys are configured, ``/metrics`` included (a scraper sends
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
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage
from msgspec import Struct

from loom.sdk.errors import NotFound

from ..state import Loom
from .auth import require_key
from .body import read_body
from .errors import validation_error
from .respond import json_response

ADMIN = {"admin": True}
#: An SSE comment this often keeps proxies from closing an idle stream and notices gone clients.
KEEPALIVE_S = 15.0


class PinRequest(Struct, forbid_unknown_fields=True):
    pinned: bool = True


def _loom(request: Request | WebSocket) -> Loom:
    return request.app.state.loom


@get("/admin/scheduler", guards=[require_key], opt=ADMIN)
async def scheduler_state(request: Request) -> Response:
    return json_response(_loom(request).scheduler.snapshot())


@post("/admin/models/{model_id:str}/load", guards=[require_key], opt=ADMIN)
async def load_model(request: Request, model_id: FromPath[str]) -> Response:
    loom = _loom(request)
    entry = loom.registry.get(model_id)
    await loom.scheduler.load(entry)
    return json_response(loom.scheduler.model_state(entry))


@post("/admin/models/{model_id:str}/unload", guards=[require_key], opt=ADMIN)
async def unload_model(request: Request, model_id: FromPath[str]) -> Response:
    loom = _loom(request)
    entry = loom.registry.get(model_id)
    unloaded = await loom.scheduler.unload(entry)
    return json_response({**loom.scheduler.model_state(entry), "unloaded": unloaded})


@post("/admin/models/{model_id:str}/pin", guards=[require_key], opt=ADMIN)
async def pin_model(request: Request, model_id: FromPath[str]) -> Response:
    loom = _loom(request)
    entry = loom.registry.get(model_id)
    body = await read_body(request, loom.config.daemon.limits.max_body_bytes)
    try:
        req = msgspec.json.decode(body, type=PinRequest) if body.strip() else PinRequest()
    except msgspec.MsgspecError as e:
        raise validation_error(e) from None
    return json_response(await loom.scheduler.pin(entry, req.pinned))


@post("/admin/work/{work_id:str}/cancel", guards=[require_key], opt=ADMIN)
async def cancel_work(request: Request, work_id: FromPath[str]) -> Response:
    if not _loom(request).scheduler.cancel(work_id):
        raise NotFound(f"No queued or running work with id '{work_id}'")
    return json_response({"id": work_id, "cancelled": True})


@get("/admin/events", guards=[require_key], opt=ADMIN)
async def scheduler_events(request: Request) -> ServerSentEvent:
    # Subscribe before answering, so nothing that happens after the response starts is missed.
    sub = _loom(request).scheduler.events.subscribe()

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

    return ServerSentEvent(stream(), headers={"cache-control": "no-cache"})


@websocket("/admin/ws", guards=[require_key], opt=ADMIN)
async def scheduler_ws(socket: WebSocket) -> None:
    scheduler = _loom(socket).scheduler
    sub = scheduler.events.subscribe()
    await socket.accept()

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


@get("/metrics", guards=[require_key], opt=ADMIN)
async def metrics(request: Request) -> Response:
    m = _loom(request).scheduler.metrics
    return Response(content=m.render(), media_type=m.content_type)


ROUTES = [
    scheduler_state,
    load_model,
    unload_model,
    pin_model,
    cancel_work,
    scheduler_events,
    scheduler_ws,
    metrics,
]
