"""Models and providers (seed 004's provider settings): what is loaded where, what serves what,
upstream health; load, unload and switch. The actions are /admin's and need an admin key when
keys are configured; they call the scheduler and the router as /admin's routes do.
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect

from ..api.admin_providers import overview
from ..config import Routes
from ..models import ModelRegistry
from ..provider_health import ProviderHealth
from ..routing import ModelRouter
from ..scheduler import Scheduler
from .render import page

ADMIN = {"admin": True}
ROLES = ("chat", "embedding", "image", "vision", "translation", "rerank")


def models_context(
    registry: ModelRegistry, scheduler: Scheduler, router: ModelRouter, routes: Routes, health: ProviderHealth
) -> dict:
    """The page's content: /admin/providers' overview, with each model's state on its device."""
    providers = overview(registry, router, routes, health)
    served = {m["id"]: m for m in providers["models"]}
    models = []
    for entry in registry:
        models.append(
            {
                "id": entry.id,
                "provider": entry.spec.provider,
                "capabilities": sorted(c.value for c in entry.capabilities),
                "local": entry.local,
                "state": scheduler.model_state(entry),
                **{k: served[entry.id][k] for k in ("healthy", "switched_to", "served_by")},
            }
        )
    snapshot = scheduler.snapshot()
    return {
        "models": models,
        "devices": snapshot["devices"],
        "nodes": snapshot.get("nodes", []),  # on a Ray cluster
        "upstreams": providers["upstreams"],
        "routes": providers["routes"],
        "switches": providers["switches"],
        "roles": ROLES,
    }


@get("/models")
async def models_page(
    request: Request,
    registry: NamedDependency[ModelRegistry],
    scheduler: NamedDependency[Scheduler],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
    health: NamedDependency[ProviderHealth],
) -> Response:
    return page(request, "models.html", **models_context(registry, scheduler, router, routes, health))


@post("/models/{model_id:str}/load", opt=ADMIN)
async def load(
    model_id: FromPath[str], registry: NamedDependency[ModelRegistry], scheduler: NamedDependency[Scheduler]
) -> Response:
    await scheduler.load(registry.get(model_id))
    return Redirect("/ui/models", status_code=303)


@post("/models/{model_id:str}/unload", opt=ADMIN)
async def unload(
    model_id: FromPath[str], registry: NamedDependency[ModelRegistry], scheduler: NamedDependency[Scheduler]
) -> Response:
    await scheduler.unload(registry.get(model_id))
    return Redirect("/ui/models", status_code=303)


@post("/providers/switch", opt=ADMIN)
async def switch(request: Request, router: NamedDependency[ModelRouter]) -> Response:
    """``name`` (a model or a capability) is served by ``to`` from now on; an empty ``to`` undoes."""
    form = await request.form()
    name = str(form.get("name") or "").strip()
    to = str(form.get("to") or "").strip() or None
    router.switch(name, to)
    return Redirect("/ui/models", status_code=303)


@post("/providers/check", opt=ADMIN)
async def check(health: NamedDependency[ProviderHealth]) -> Response:
    await health.check_all()
    return Redirect("/ui/models", status_code=303)


ROUTES = [models_page, load, unload, switch, check]
