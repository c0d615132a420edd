"""/v1/models: OpenAI's fields plus Loom's ``capabilities`` and ``provider``."""

from __future__ import annotations

from litestar import Request, Response, get

from loom.sdk.types import ModelList

from ..state import Loom
from .respond import json_response


@get("/models")
async def list_models(request: Request) -> Response:
    loom: Loom = request.app.state.loom
    return json_response(ModelList(data=[entry.card() for entry in loom.registry]))


@get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    loom: Loom = request.app.state.loom
    card = loom.registry.get(model_id.lstrip("/")).card()
    return json_response(card)
