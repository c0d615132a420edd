"""OpenAI's Batch API: ``POST /v1/batches``, ``GET /v1/batches``, ``GET /v1/batches/{batch_id}``
and ``POST /v1/batches/{batch_id}/cancel``, in OpenAI's shapes (see :mod:`loom.daemon.batches`).
A batch belongs to the principal that created it (:func:`.jobs.owner_of`): another user's is a 404,
an admin sees all."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from loom.sdk.errors import InvalidRequest

from ..batches import Batches
from ..http.body import BodyReader
from ..principals import principal_of
from .batch_shapes import Batch, BatchList, CreateBatchRequest
from .jobs import owner_of
from .openapi import BODY_ERRORS, Query, doc
from .respond import json_response

LIST_QUERY = (
    Query("after", {"type": "string"}, "List the batches after the one with this id"),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "At most this many (default 20)"),
)


@post(
    "/batches",
    status_code=200,
    operation_class=doc("Create a batch", body=CreateBatchRequest, returns=Batch, errors=(*BODY_ERRORS, 404, 429)),
)
async def create_batch(
    request: Request, bodies: NamedDependency[BodyReader], batches: NamedDependency[Batches]
) -> Response:
    req = await bodies.decode(request, CreateBatchRequest)
    expires = req.output_expires_after.seconds if req.output_expires_after is not None else None
    batch = batches.create(
        owner_of(request), req.input_file_id, req.endpoint, req.completion_window, req.metadata, expires
    )
    return json_response(batch)


@get("/batches", operation_class=doc("List batches", returns=BatchList, errors=(400, 404), query=LIST_QUERY))
async def list_batches(request: Request, batches: NamedDependency[Batches]) -> Response:
    q = request.query_params
    limit = q.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidRequest(f"limit must be an integer from 1 to 100, got {limit!r}", param="limit")
    return json_response(batches.page(principal_of(request).scope, limit=int(limit), after=q.get("after")))


@get("/batches/{batch_id:str}", operation_class=doc("A batch", returns=Batch, errors=(404,)))
async def get_batch(request: Request, batch_id: FromPath[str], batches: NamedDependency[Batches]) -> Response:
    return json_response(batches.get(batch_id, principal_of(request).scope))


@post(
    "/batches/{batch_id:str}/cancel",
    status_code=200,
    operation_class=doc("Cancel a batch", returns=Batch, errors=(404, 409)),
)
async def cancel_batch(request: Request, batch_id: FromPath[str], batches: NamedDependency[Batches]) -> Response:
    return json_response(await batches.cancel(batch_id, principal_of(request).scope))


ROUTES = [create_batch, list_batches, get_batch, cancel_batch]
