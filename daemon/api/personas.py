"""Personas (seed 003): ``GET /v1/personas`` and ``GET /v1/personas/{name}``.

The ``persona`` pipeline upserts them by name into the record store (collection ``personas``);
these routes list them with their images and motto history. A persona is the principal's whose
job made it: a user lists and reads its own (another's name is a 404); an admin sees all. An image's ``url`` lasts
``[storage] url_ttl`` (seed 003 hands its browser 60-second URLs): a signed ``/v1/files/...``
URL an ``<img>`` can load without a key, or a presigned URL of the S3 output store.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from loom.sdk.errors import NotFound

from ..principals import principal_of
from ..records import RecordStore
from ..storage.service import Storage
from . import shapes
from .jobs import PAGE, _int
from .openapi import doc
from .respond import json_response

COLLECTION = "personas"


def _with_url(item: Any, storage: Storage | None) -> Any:
    if isinstance(item, dict) and item.get("path"):
        url = storage.url(item["path"]) if storage is not None else f"/v1/files/{item['path']}"
        return {**item, "url": url}
    return item


def persona_view(record: dict, *, detail: bool, storage: Storage | None = None) -> dict[str, Any]:
    """A persona as the API shows it; with ``storage`` its image URLs are signed (or presigned)."""
    data = record["data"]
    images = [_with_url(i, storage) for i in data.get("images", [])]
    mottos = data.get("mottos", [])
    view: dict[str, Any] = {
        "object": "persona",
        "name": data.get("name", record["key"]),
        "key": record["key"],
        "prompt": data.get("prompt"),
        "motto_tone": data.get("motto_tone"),
        "motto": data.get("motto"),
        "image": images[-1] if images else None,
        "images_count": len(images),
        "mottos_count": len(mottos),
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
    }
    if detail:
        view["images"] = images
        view["mottos"] = mottos
    return view


@get("/personas", operation_class=doc("List personas", returns=shapes.PersonaList, errors=(400,), query=PAGE))
async def list_personas(
    request: Request, records: NamedDependency[RecordStore], storage: NamedDependency[Storage]
) -> Response:
    q = request.query_params
    limit = _int(q.get("limit"), "limit", 100, 1, 1000)
    offset = _int(q.get("offset"), "offset", 0, 0, 10**9)
    rows = records.list(COLLECTION, limit=limit + 1, offset=offset, owner=principal_of(request).scope)
    data = [persona_view(r, detail=False, storage=storage) for r in rows[:limit]]
    return json_response({"object": "list", "data": data, "has_more": len(rows) > limit})


@get(
    "/personas/{persona:str}", operation_class=doc("One persona", returns=shapes.Persona, errors=(404,))
)  # not {name}: Litestar reserves that kwarg and warns
async def get_persona(
    request: Request, persona: FromPath[str], records: NamedDependency[RecordStore], storage: NamedDependency[Storage]
) -> Response:
    record = records.get(COLLECTION, persona, principal_of(request).scope)
    if record is None:
        raise NotFound(f"No persona named '{persona}'", param="name")
    return json_response(persona_view(record, detail=True, storage=storage))


ROUTES = [list_personas, get_persona]
