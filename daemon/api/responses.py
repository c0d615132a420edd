"""/v1/responses: the Responses API, served by the same chat call as /v1/chat/completions.

``POST /v1/responses`` translates the request into a chat request (with the stored conversation
of ``previous_response_id`` before it), prepares it like any chat request (rules, route,
parameter policy, image URLs), runs it, and answers a response object or its event stream.
Responses are stored unless ``store`` is false; ``GET`` and ``DELETE /v1/responses/{id}`` read
and remove them, ``GET /v1/responses/{id}/input_items`` lists what each was asked with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from loom.sdk.errors import InvalidRequest, LoomError
from loom.sdk.protocols import RunContext
from loom.sdk.responses import CreateResponseRequest, Event, ResponseDeleted, ResponseItemList, ResponseObject

from ..chat.generations import chat_generations
from ..chat.intake import ChatIntake
from ..chat.param_policy import ignored_header
from ..http.body import BodyReader
from ..principals import Principal, principal_of
from ..responses import ResponseStore
from ..responses.items import page, resources
from ..responses.stream import ResponseBuilder, new_id
from ..responses.translate import shown, to_chat
from ..routing import ModelRouter
from ..scheduler import Priority, Scheduler
from .openapi import BODY_ERRORS, MODEL_ERRORS, Query, doc
from .respond import PROVENANCE, json_response, served_by

_encode = msgspec.json.encode


@post(
    "/responses",
    status_code=200,
    operation_class=doc(
        "Create a response",
        body=CreateResponseRequest,
        returns=ResponseObject,
        events=Event,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def create_response(
    request: Request,
    bodies: NamedDependency[BodyReader],
    intake: NamedDependency[ChatIntake],
    router: NamedDependency[ModelRouter],
    scheduler: NamedDependency[Scheduler],
    responses: NamedDependency[ResponseStore],
) -> Response:
    req = await bodies.decode(request, CreateResponseRequest)
    run = await start(
        req, intake, router, scheduler, responses, own_host=request.url.netloc, owner=principal_of(request)
    )
    if req.stream:

        async def sse() -> AsyncIterator[ServerSentEventMessage]:
            async for event in run.events():
                tag = type(event).__struct_config__.tag
                assert isinstance(tag, str), "a stream event is tagged with its type name"
                yield ServerSentEventMessage(data=_encode(event).decode(), event=tag)

        return ServerSentEvent(sse(), headers=run.headers, status_code=200)

    return json_response(await run.final(), headers=run.headers)


class ResponseRun:
    """A started response: its events as they come, or its final object (stored unless
    ``store`` is false, once it has finished)."""

    def __init__(self, req, gens, headers, builder, keep) -> None:
        self.req, self.gens, self.headers, self.builder, self._keep = req, gens, headers, builder, keep

    async def events(self) -> AsyncIterator[Event]:
        builder = self.builder
        for event in builder.start():
            yield event
        try:
            async for _, chunks in self.gens:
                async for chunk in chunks:
                    for event in builder.chunk(chunk):
                        yield event
        except LoomError as e:
            for event in builder.fail(e):
                yield event
            return
        for event in builder.finish_events():
            yield event
        self._keep()

    async def final(self) -> ResponseObject:
        """The finished response (its failure raised as the route would answer it)."""
        async for _ in self.events():
            pass
        if self.builder.failure is not None:
            raise self.builder.failure
        assert self.builder.final is not None, "a response that did not fail has finished"
        return self.builder.final


async def start(
    req: CreateResponseRequest,
    intake: ChatIntake,
    router: ModelRouter,
    scheduler: Scheduler,
    responses: ResponseStore,
    *,
    own_host: str | None,
    owner: Principal,
    priority: Priority | None = None,
    ctx: RunContext | None = None,
) -> ResponseRun:
    """Translate, prepare and start a response (the route's, and a batch line's) for ``owner``:
    it continues ``owner``'s own responses only, and the stored answer is theirs."""
    history = []
    if req.previous_response_id is not None:
        previous = responses.get(req.previous_response_id, param="previous_response_id", owner=owner.scope)
        history = previous.conversation
    translated = to_chat(req, history, intake.compat)
    prepared = await intake.prepare(translated.chat, own_host=own_host, shown=shown, image_param=translated.image_param)
    gens = chat_generations(router, scheduler, prepared, priority=priority, ctx=ctx)
    entry = await gens.start()
    headers = {**served_by(entry), **ignored_header(translated.ignored + gens.ignored)}
    builder = ResponseBuilder(req, new_id("resp"), req.model)

    def keep() -> None:
        if req.store is not False and builder.final is not None:
            conversation = [*translated.conversation, builder.answer()]
            responses.put(builder.final, conversation, resources(translated.items), owner.name)

    return ResponseRun(req, gens, headers, builder, keep)


@get("/responses/{response_id:str}", operation_class=doc("A stored response", returns=ResponseObject, errors=(404,)))
async def get_response(
    request: Request, response_id: FromPath[str], responses: NamedDependency[ResponseStore]
) -> Response:
    return json_response(responses.get(response_id, owner=principal_of(request).scope).response)


#: GET /v1/responses/{id}/input_items takes OpenAI's paging parameters.
ITEMS_QUERY = (
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "At most this many (default 20)"),
    Query("order", {"enum": ["asc", "desc"]}, "desc (the default) lists the last item first"),
    Query("after", {"type": "string"}, "List the items after the one with this id"),
)


@get(
    "/responses/{response_id:str}/input_items",
    operation_class=doc(
        "The input items of a stored response", returns=ResponseItemList, errors=(400, 404), query=ITEMS_QUERY
    ),
)
async def list_input_items(
    request: Request, response_id: FromPath[str], responses: NamedDependency[ResponseStore]
) -> Response:
    q = request.query_params
    limit = q.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidRequest(f"limit must be an integer from 1 to 100, got {limit!r}", param="limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"order must be 'asc' or 'desc', got {order!r}", param="order")
    items = responses.get(response_id, owner=principal_of(request).scope).input_items
    return json_response(page(items, limit=int(limit), order=order, after=q.get("after")))


@delete(
    "/responses/{response_id:str}",
    status_code=200,
    operation_class=doc("Delete a stored response", returns=ResponseDeleted, errors=(404,)),
)
async def delete_response(
    request: Request, response_id: FromPath[str], responses: NamedDependency[ResponseStore]
) -> Response:
    responses.delete(response_id, owner=principal_of(request).scope)
    return json_response(ResponseDeleted(id=response_id))


ROUTES = [create_response, get_response, list_input_items, delete_response]
