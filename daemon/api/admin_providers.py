"""/admin/providers: remote upstreams' health, and runtime switching of who serves what (seed 004).

``GET /admin/providers`` shows each upstream (never a key: only the variable it is read from and
whether it is set), every model with what serves it now, and the switches in force.
``POST /admin/providers/switch`` ``{"model": "<model id or capability>", "to": "<model id>"}``
switches; ``"to": null`` undoes. ``POST /admin/providers/check`` checks every upstream now.
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from loom.sdk.errors import InvalidRequest
from msgspec import Struct

from ..config import VISION_ROLES, Routes
from ..http.body import BodyReader
from ..models import ModelRegistry
from ..provider_health import ProviderHealth
from ..routing import ModelRouter
from . import shapes
from .openapi import BODY_ERRORS, doc
from .respond import json_response


class SwitchRequest(Struct, forbid_unknown_fields=True):
    #: A model id or alias, or a capability ("chat", "embedding", "image", "vision", ...).
    model: str | None = None
    #: The model that serves it from now on; null undoes the switch.
    to: str | None = None
    #: Another way to name a capability: ``{"capability": "chat", "to": "..."}``.
    capability: str | None = None


def overview(registry: ModelRegistry, router: ModelRouter, routes: Routes, health: ProviderHealth) -> dict:
    """Upstreams' health, what serves each model and role, the switches (the web UI's models page
    shows it too)."""
    models = []
    for entry in registry:
        view = router.describe_model(entry)
        models.append(
            {
                "id": entry.id,
                "provider": entry.spec.provider,
                "remote": not entry.local,
                "healthy": router.healthy.get(entry.id, True),
                "switched_to": view["switched_to"],
                "served_by": view["served_by"],
            }
        )
        profile = getattr(entry.provider, "parameter_profile", None)  # what a remote model takes
        if callable(profile):
            models[-1]["parameters"] = profile()
    served = {}
    for role in ("chat", "embedding", "image", "vision", "translation", "rerank"):
        served[role] = router.route_for(role, getattr(routes, role))
    for role, fallback in VISION_ROLES.items():  # score / describe / judge: own route, else vision's
        served[role] = router.route_for(fallback, getattr(routes, role) or getattr(routes, fallback))
    return {
        "object": "providers",
        "interval_s": health.interval,
        "upstreams": health.report(),
        "models": models,
        "routes": served,
        "switches": router.switches(),
    }


@get("/providers", operation_class=doc("Upstreams, what serves each model, switches", returns=shapes.ProvidersOverview))
async def list_providers(
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    health: NamedDependency[ProviderHealth],
) -> Response:
    return json_response(overview(registry, router, routes, health))


@post(
    "/providers/check",
    status_code=200,
    operation_class=doc("Check every upstream now", returns=shapes.ProvidersOverview),
)
async def check_providers(
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    health: NamedDependency[ProviderHealth],
) -> Response:
    await health.check_all()
    return json_response(overview(registry, router, routes, health))


@post(
    "/providers/switch",
    status_code=200,
    operation_class=doc(
        "Switch what serves a model or capability",
        body=SwitchRequest,
        returns=shapes.Switched,
        errors=(*BODY_ERRORS, 404),
    ),
)
async def switch_provider(
    request: Request, bodies: NamedDependency[BodyReader], router: NamedDependency[ModelRouter]
) -> Response:
    req = await bodies.decode(request, SwitchRequest)
    if req.capability is not None and req.model is None:
        result = router.switch_capability(req.capability, req.to)
    elif req.model is not None and req.capability is None:
        result = router.switch(req.model, req.to)
    else:
        raise InvalidRequest("Name exactly one of 'model' (a model or capability) and 'capability'", param="model")
    return json_response({**result, "switches": router.switches()})


ROUTES = [list_providers, check_providers, switch_provider]
