"""Putting items into the retrieval store and taking them out (seed 001 builds its indices from
example data): ``POST /v1/rag/items`` and ``DELETE /v1/rag/items/{item_id}``.

An item is a ``text``, an ``image`` (a data URI, or the URL of a file Loom served), or both (an
image with its caption or story: the image is what is embedded, the text is kept with it, as the
``image_to_story`` pipeline stores a picture). The body is one item as a JSON object, or a batch:
a JSON array, or JSON Lines (``Content-Type: application/jsonl`` or ``application/x-ndjson``), one
item a line. Each item goes into ``collection`` ("images" for an item with an image, else
"stories" by default), embedded by ``model`` (default: the vision route's model when it embeds, as
the pipelines choose, else the embedding route), with ``meta`` kept and returned by searches. An
image sent as a data URI is stored under ``images/rag/`` so search results link to it. Items so
added belong to no job: pruning jobs never removes them. An item is the principal's that added it
(or whose job did): a user searches and deletes its own only (another's id is a 404).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, delete, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from loom.sdk import calls
from loom.sdk.errors import InvalidRequest, NotFound, ProviderError
from loom.sdk.types import Capability
from msgspec import Meta, Struct

from ..config import Routes
from ..files import FileStore
from ..http.body import BodyReader
from ..http.errors import validation_error
from ..media import image_bytes
from ..models import ModelRegistry
from ..principals import owner_folder, principal_of
from ..rag import RagStore
from ..rag.store import TEXT_LIMIT, check_collection
from ..routing import ModelRouter
from .openapi import BODY_ERRORS, MODEL_ERRORS, doc
from .respond import json_response

#: Items one request may add.
MAX_ITEMS = 1000
#: Inputs per embedding call.
EMBED_BATCH = 32
_JSONL = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines", "application/jsonlines")


class RagItem(Struct, forbid_unknown_fields=True, kw_only=True):
    """One item for the retrieval store: ``text``, ``image`` or both."""

    text: Annotated[str, Meta(min_length=1, max_length=TEXT_LIMIT)] | None = None
    #: A data URI, or the URL of a file this daemon served (``/v1/files/...``).
    image: str | None = None
    #: Default: "images" for an item with an image, else "stories".
    collection: str | None = None
    #: The embedding model; default: the vision route's model if it embeds, else the embedding route.
    model: str | None = None
    meta: dict[str, Any] | None = None


class RagItemAdded(Struct):
    id: int
    object: Literal["rag.item"]
    collection: str
    model: str
    kind: Literal["text", "image"]
    path: str | None
    url: str | None


class RagItemsAdded(Struct):
    object: Literal["list"]
    data: list[RagItemAdded]


class RagItemDeleted(Struct):
    id: int
    object: Literal["rag.item"]
    deleted: Literal[True]


def decode_items(body: bytes, content_type: str) -> list[RagItem]:
    """One JSON object, a JSON array, or JSON Lines (by content type)."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind in _JSONL:
            items = [
                _line(line, n) for n, line in enumerate(body.splitlines(), 1) if line.strip() and not _comment(line)
            ]
        elif body.lstrip().startswith(b"["):
            items = msgspec.json.decode(body, type=list[RagItem])
        else:
            items = [msgspec.json.decode(body, type=RagItem)]
    except msgspec.MsgspecError as e:
        raise validation_error(e) from None
    if not items:
        raise InvalidRequest("no items: send one item, a JSON array or JSON Lines", param="items")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"at most {MAX_ITEMS} items a request, got {len(items)}", param="items")
    for n, item in enumerate(items):
        if item.text is None and item.image is None:
            raise InvalidRequest(f"item {n}: give a 'text', an 'image' or both", param="text")
        if item.collection is not None:
            check_collection(item.collection)
    return items


def _comment(line: bytes) -> bool:
    return line.lstrip().startswith(b"#")


def _line(line: bytes, n: int) -> RagItem:
    try:
        return msgspec.json.decode(line, type=RagItem)
    except msgspec.MsgspecError as e:
        raise InvalidRequest(f"line {n}: {e}", param=f"line {n}") from None


def default_model(registry: ModelRegistry, router: ModelRouter, routes: Routes) -> str:
    """The model the pipelines embed with: the vision route's when it embeds (CLIP), else the
    embedding route's, else the first model that embeds."""
    vision = router.route_for(Capability.VISION, routes.vision)
    if vision and vision in registry and Capability.EMBEDDING in registry.get(vision).capabilities:
        return vision
    route = router.route_for(Capability.EMBEDDING, routes.embedding)
    if route:
        return route
    entry = registry.first_with(Capability.EMBEDDING)
    if entry is None:
        raise InvalidRequest(
            "no configured model can embed: name one in 'model' or set [routes].embedding", param="model"
        )
    return entry.id


@post(
    "/rag/items",
    status_code=201,
    operation_class=doc(
        "Add items to the retrieval store",
        body=RagItem,
        returns=RagItemsAdded,
        status=201,
        errors=BODY_ERRORS + MODEL_ERRORS,
    ),
)
async def add_items(
    request: Request,
    bodies: NamedDependency[BodyReader],
    rag: NamedDependency[RagStore],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    files: NamedDependency[FileStore],
) -> Response:
    principal = principal_of(request)  # the items (and their images) are its own
    items = decode_items(await bodies.read(request), request.headers.get("content-type", "application/json"))
    fallback: str | None = None
    prepared: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        model = item.model
        if model is None:
            fallback = fallback or default_model(registry, router, routes)
            model = fallback
        registry.for_capability(model, Capability.EMBEDDING)
        image = image_bytes(item.image, files, param="image") if item.image is not None else None
        prepared.append({"n": n, "item": item, "model": model, "image": image})
    # Embed per model, a batch at a time: an image item by its image, a text item by its text.
    vectors: dict[int, list[float]] = {}
    for model in dict.fromkeys(p["model"] for p in prepared):
        group = [p for p in prepared if p["model"] == model]
        for start in range(0, len(group), EMBED_BATCH):
            chunk = group[start : start + EMBED_BATCH]
            inputs = [_data_uri(p["image"]) if p["image"] is not None else p["item"].text for p in chunk]
            _, result = await router.run(model, Capability.EMBEDDING, calls.Embed(inputs=inputs))
            if len(result.vectors) != len(inputs):
                raise ProviderError(f"model {model!r} returned {len(result.vectors)} vectors for {len(inputs)} inputs")
            for p, vector in zip(chunk, result.vectors):
                vectors[p["n"]] = vector
    # Store the images, then the items, per (collection, model).
    rows: dict[int, dict[str, Any]] = {}
    for p in prepared:
        given: RagItem = p["item"]
        path = None
        if p["image"] is not None:
            path = _served_path(given.image or "") or await asyncio.to_thread(
                files.save, p["image"], _suffix(p["image"]), owner_folder("images/rag", principal.name)
            )
        kind = "image" if p["image"] is not None else "text"
        collection = given.collection or ("images" if kind == "image" else "stories")
        rows[p["n"]] = {
            "collection": collection,
            "model": p["model"],
            "kind": kind,
            "text": given.text or "",
            "path": path,
            "meta": given.meta or {},
            "owner": principal.name,
        }
    added: dict[int, dict[str, Any]] = {}
    for key in dict.fromkeys((r["collection"], r["model"]) for r in rows.values()):
        ns = [n for n, r in rows.items() if (r["collection"], r["model"]) == key]
        stored = await asyncio.to_thread(rag.add, key[0], [vectors[n] for n in ns], [rows[n] for n in ns], model=key[1])
        for n, s in zip(ns, stored):
            added[n] = s
    data = []
    for n in range(len(items)):
        r = rows[n]
        data.append(
            {
                "id": added[n]["id"],
                "object": "rag.item",
                "collection": r["collection"],
                "model": r["model"],
                "kind": r["kind"],
                "path": r["path"],
                "url": f"/v1/files/{r['path']}" if r["path"] else None,
            }
        )
    return json_response({"object": "list", "data": data}, status_code=201)


@delete(
    "/rag/items/{item_id:int}",
    status_code=200,
    operation_class=doc("Delete an item of the retrieval store", returns=RagItemDeleted, errors=(404,)),
)
async def delete_item(
    request: Request, item_id: FromPath[int], rag: NamedDependency[RagStore], files: NamedDependency[FileStore]
) -> Response:
    item = await asyncio.to_thread(rag.get_item, item_id) if 0 <= item_id < 2**63 else None
    if item is not None and not principal_of(request).owns(item["owner"]):
        item = None  # another's: as if there were none
    if item is None or not await asyncio.to_thread(rag.remove_item, item_id):
        raise NotFound(f"No retrieval item with id {item_id}", param="item_id")
    path = item.get("path")
    if path and path.startswith("images/rag/"):  # stored by POST /v1/rag/items for this item
        try:
            (files.root / path).unlink(missing_ok=True)
        except OSError:
            pass
    return json_response({"id": item_id, "object": "rag.item", "deleted": True})


def _served_path(ref: str) -> str | None:
    """The data-dir path of a ``/v1/files/...`` URL (the file is already served), else None."""
    marker = "/v1/files/"
    if ref.startswith(("http://", "https://")) and marker in ref:
        from urllib.parse import urlparse

        return urlparse(ref).path.split(marker, 1)[1]
    return None


def _suffix(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[8:12] == b"WEBP":
        return ".webp"
    return ".png"


def _data_uri(data: bytes) -> str:
    import base64

    kind = {".jpg": "jpeg", ".webp": "webp"}.get(_suffix(data), "png")
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


ROUTES = [add_items, delete_item]
