"""/admin/models: the configured models, and adding and removing them without a restart.

- ``GET /admin/models``: every model with provider, capabilities, where its weights are and their
  size on disk, and whether it is loaded (device, footprint); ``config`` names the config file.
- ``POST /admin/models``: ``{"source": "<GGUF file | model folder | cached hub id>", "id"?, "file"?,
  "provider"?, "capabilities"?, "aliases"?, "options"?, "description"?, "keep_alive"?}``. The
  source is recognised from its files, the entry is written to the config file (comments kept)
  and the model serves at once. 201 with the model; 400 naming the path and what was expected
  when it is missing, unreadable or not recognised; 409 when the id is taken. Nothing is written
  when it fails.
- ``DELETE /admin/models/{id}``: its queued work fails, running work finishes, it unloads and
  leaves the registry and the config file. Routes or fallbacks that name it make it a 400.
- ``POST /admin/models/reload``: take in hand edits of the file's ``[[models]]``.
"""

from __future__ import annotations

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from ..catalog import listing
from ..catalog.edits import AddModel
from ..catalog.live import ModelCatalog
from ..http.body import BodyReader
from ..models import ModelRegistry
from ..scheduler import Scheduler
from . import shapes
from .openapi import BODY_ERRORS, doc
from .respond import json_response


@get("/models", operation_class=doc("The configured models", returns=shapes.ModelRecordList))
async def list_models(
    catalog: NamedDependency[ModelCatalog],
    registry: NamedDependency[ModelRegistry],
    scheduler: NamedDependency[Scheduler],
) -> Response:
    path = catalog.config_path
    data = [listing.record(entry, scheduler) for entry in registry]
    return json_response({"object": "list", "config": str(path) if path else None, "data": data})


@post(
    "/models",
    status_code=201,
    operation_class=doc(
        "Add a model", body=AddModel, returns=shapes.ModelRecord, status=201, errors=(*BODY_ERRORS, 409)
    ),
)
async def add_model(
    request: Request,
    bodies: NamedDependency[BodyReader],
    catalog: NamedDependency[ModelCatalog],
    scheduler: NamedDependency[Scheduler],
) -> Response:
    req = await bodies.decode(request, AddModel)
    entry = await catalog.add(req)
    return json_response(listing.record(entry, scheduler), status_code=201)


@delete(
    "/models/{model_id:str}",
    status_code=200,
    operation_class=doc("Remove a model", returns=shapes.ModelRemoved, errors=(400, 404)),
)
async def remove_model(model_id: FromPath[str], catalog: NamedDependency[ModelCatalog]) -> Response:
    summary = await catalog.remove(model_id)
    return json_response({"id": model_id, "deleted": True, **summary})


@post(
    "/models/reload",
    status_code=200,
    operation_class=doc("Take in edits of the config's [[models]]", returns=shapes.ModelsReloaded, errors=(400,)),
)
async def reload_models(catalog: NamedDependency[ModelCatalog]) -> Response:
    return json_response(await catalog.reload())


ROUTES = [list_models, add_model, remove_model, reload_models]
