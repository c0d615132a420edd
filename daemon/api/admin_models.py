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
from litestar.params import FromPath

from ..catalog import listing
from ..catalog.edits import AddModel
from ..state import Loom
from .auth import require_key
from .body import decode_body
from .respond import json_response

ADMIN = {"admin": True}


def _loom(request: Request) -> Loom:
    return request.app.state.loom


@get("/admin/models", guards=[require_key], opt=ADMIN)
async def list_models(request: Request) -> Response:
    loom = _loom(request)
    path = loom.catalog.config_path
    data = [listing.record(entry, loom.scheduler) for entry in loom.registry]
    return json_response({"object": "list", "config": str(path) if path else None, "data": data})


@post("/admin/models", guards=[require_key], opt=ADMIN)
async def add_model(request: Request) -> Response:
    loom = _loom(request)
    req = await decode_body(request, AddModel)
    entry = await loom.catalog.add(req)
    return json_response(listing.record(entry, loom.scheduler), status_code=201)


@delete("/admin/models/{model_id:str}", guards=[require_key], opt=ADMIN, status_code=200)
async def remove_model(request: Request, model_id: FromPath[str]) -> Response:
    summary = await _loom(request).catalog.remove(model_id)
    return json_response({"id": model_id, "deleted": True, **summary})


@post("/admin/models/reload", guards=[require_key], opt=ADMIN)
async def reload_models(request: Request) -> Response:
    return json_response(await _loom(request).catalog.reload())


ROUTES = [list_models, add_model, remove_model, reload_models]
