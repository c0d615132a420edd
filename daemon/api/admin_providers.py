"""/admin/providers: remote upstreams' health, and runtime switching of who serves what (seed 004).

``GET /admin/providers`` shows each upstream (never a key: only the variable it is read from and
whether it is set), every model with what serves it now, and the switches in force.
``POST /admin/providers/switch`` ``{"model": "<model id or capability>", "to": "<model id>"}``
switches; ``"to": null`` undoes. ``POST /admin/providers/check`` checks every upstream now.
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from msgspec import Struct

from loom.sdk.errors import InvalidRequest

from ..state import Loom
from .auth import require_key
from .body import decode_body
from .respond import json_response

ADMIN = {"admin": True}


class SwitchRequest(Struct, forbid_unknown_fields=True):
    #: A model id or alias, or a capability ("chat", "embedding", "image", "vision", ...).
    model: str | None = None
    #: The model that serves it from now on; null undoes the switch.
    to: str | None = None
    #: Another way to name a capability: ``{"capability": "chat", "to": "..."}``.
    capability: str | None = None


def _overview(loom: Loom) -> dict:
    router = loom.router
    health = loom.provider_health
    models = []
    for entry in loom.registry:
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
    routes = {}
    for role in ("chat", "embedding", "image", "vision", "translation"):
        routes[role] = router.route_for(role, getattr(loom.config.routes, role))
    return {
        "object": "providers",
        "interval_s": health.interval if health else None,
        "upstreams": health.report() if health else [],
        "models": models,
        "routes": routes,
        "switches": router.switches(),
    }


@get("/admin/providers", guards=[require_key], opt=ADMIN)
async def list_providers(request: Request) -> Response:
    return json_response(_overview(request.app.state.loom))


@post("/admin/providers/check", guards=[require_key], opt=ADMIN)
async def check_providers(request: Request) -> Response:
    loom: Loom = request.app.state.loom
    if loom.provider_health is not None:
        await loom.provider_health.check_all()
    return json_response(_overview(loom))


@post("/admin/providers/switch", guards=[require_key], opt=ADMIN)
async def switch_provider(request: Request) -> Response:
    loom: Loom = request.app.state.loom
    req = await decode_body(request, SwitchRequest)
    if (req.model is None) == (req.capability is None):
        raise InvalidRequest("Name exactly one of 'model' (a model or capability) and 'capability'", param="model")
    if req.capability is not None:
        result = loom.router.switch_capability(req.capability, req.to)
    else:
        result = loom.router.switch(req.model, req.to)
    return json_response({**result, "switches": loom.router.switches()})


ROUTES = [list_providers, check_providers, switch_provider]
