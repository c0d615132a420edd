"""The app factory: config -> plugins -> models -> scheduler -> Litestar app."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, MediaType, Request, Router, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from loom.sdk.config import ModelConfig

from .api import (
    admin,
    admin_models,
    admin_providers,
    artifacts,
    chat,
    embeddings,
    image_edits,
    images,
    loom_routes,
    models,
    openapi,
    personas,
    rag,
)
from .api import jobs as job_api
from .api.auth import KeyRing, require_key
from .api.errors import EXCEPTION_HANDLERS
from .catalog.live import ModelCatalog
from .config import Config
from .files import FileStore
from .jobs import jobs_lifespan
from .models import build_registry
from .plugin_manager import collect, collect_providers, make_plugin_manager
from .provider_health import provider_lifespan
from .rag import rag_lifespan
from .records import records_lifespan
from .routing import ModelRouter
from .scheduler import Scheduler
from .state import Loom

log = logging.getLogger("loom")


def build_loom(config: Config, extra_plugins: dict[str, object] | None = None, config_path: Path | None = None) -> Loom:
    """Everything but HTTP: plugins, registry, scheduler. Raises ConfigError / PluginError.

    ``config_path`` is the file ``config`` came from: models added while running are written there.
    """
    pm, infos = make_plugin_manager(config.plugins, extra_plugins)
    providers = collect_providers(pm, infos)
    plugin_models: list[tuple[str, ModelConfig]] = collect(pm, "register_models")
    registry = build_registry(config, providers, plugin_models, infos)
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    scheduler = Scheduler(config, registry)
    router = ModelRouter(registry, scheduler)
    catalog = ModelCatalog(
        config, config_path, registry=registry, scheduler=scheduler, router=router, providers=providers, plugins=infos
    )
    return Loom(
        config=config,
        pm=pm,
        plugins=infos,
        registry=registry,
        scheduler=scheduler,
        router=router,
        keys=KeyRing(config),
        files=FileStore(data_dir),
        catalog=catalog,
    )


@get("/health", media_type=MediaType.JSON)
async def health(request: Request) -> dict:
    loom: Loom = request.app.state.loom
    return {"status": "ok", "models": len(loom.registry)}


V1_ROUTES = [
    chat.chat_completions,
    chat.completions,
    embeddings.embeddings,
    images.generations,
    image_edits.edits,
    image_edits.variations,
    models.list_models,
    models.get_model,
    loom_routes.translate,
    loom_routes.describe,
    loom_routes.score,
    loom_routes.serve_file,
    *job_api.ROUTES,
    *artifacts.ROUTES,
    *rag.ROUTES,
    *personas.ROUTES,
]


def create_app(
    config: Config, extra_plugins: dict[str, object] | None = None, config_path: Path | None = None
) -> Litestar:
    loom = build_loom(config, extra_plugins, config_path)

    @asynccontextmanager
    async def lifespan(app: Litestar):
        await loom.scheduler.start()
        try:
            yield
        finally:
            await loom.scheduler.stop()

    v1 = Router(path="/v1", route_handlers=V1_ROUTES, guards=[require_key])
    app = Litestar(
        route_handlers=[health, v1, *admin_providers.ROUTES, *admin.ROUTES, *admin_models.ROUTES],
        lifespan=[lifespan, provider_lifespan(loom), rag_lifespan(loom), records_lifespan(loom), jobs_lifespan(loom)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Loom",
            version="0.1.0",
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
        # Loom reads bodies itself (strict decoding, its own size limit and error shape).
        request_max_body_size=None,
    )
    app.state.loom = loom
    openapi.add_components(app.openapi_schema)  # ~6 ms: the document is built once, here
    return app
