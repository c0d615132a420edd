"""/v1/models: OpenAI's fields plus Loom's ``capabilities`` and ``provider``."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from loom.sdk.types import ModelCard, ModelList

from ..models import ModelRegistry
from .openapi import doc
from .respond import json_response


@get("/models", operation_class=doc("List the models", returns=ModelList))
async def list_models(registry: NamedDependency[ModelRegistry]) -> Response:
    return json_response(ModelList(data=[entry.card() for entry in registry]))


@get("/models/{model_id:path}", operation_class=doc("One model", returns=ModelCard, errors=(404,)))
async def get_model(model_id: FromPath[str], registry: NamedDependency[ModelRegistry]) -> Response:
    card = registry.get(model_id.lstrip("/")).card()
    return json_response(card)
