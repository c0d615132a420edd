"""The app factory: config -> services (:mod:`loom.daemon.services`) -> Litestar app.

Route handlers get the services they use by name through Litestar's dependency injection, e.g.
``registry: NamedDependency[ModelRegistry]``; the names are the fields of
:class:`~loom.daemon.services.Services`. Routes are grouped in Routers, each with its guard
declared once: ``/v1`` needs any key, ``/admin`` (and ``/metrics``) an admin key, and ``/ui`` (the
web UI, :mod:`loom.daemon.ui`) a signed-in session or a key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Router, get
from litestar.config.cors import CORSConfig
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from . import credentials
from .access_log import access_log
from .api import (
    admin,
    admin_jobs,
    admin_models,
    admin_providers,
    artifacts,
    chat,
    embeddings,
    evaluations,
    image_edits,
    images,
    loom_routes,
    messages,
    models,
    ollama,
    openapi,
    personas,
    rag,
    rag_items,
    rerank,
    responses,
    tokens,
)
from .api import jobs as job_api
from .api.allow import fix_allow
from .api.auth import key_guards
from .api.cut import answer_when_cut
from .api.errors import EXCEPTION_HANDLERS
from .api.plugin_routes import DaemonRouteContext, collect_routes
from .api.shapes import Health
from .config import Config
from .models import ModelRegistry
from .principals import single_user
from .quotas import middleware as quota_middleware
from .services import Services, build_services
from .ui import build_ui

log = logging.getLogger("loom")


@get("/health", media_type=MediaType.JSON, operation_class=openapi.doc("Is it up", returns=Health))
async def health(registry: NamedDependency[ModelRegistry]) -> dict:
    return {"status": "ok", "models": len(registry)}


V1_ROUTES = [
    chat.chat_completions,
    chat.completions,
    *responses.ROUTES,
    *messages.ROUTES,
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
    *rag_items.ROUTES,
    *personas.ROUTES,
    *evaluations.ROUTES,
    *rerank.ROUTES,
    tokens.mint_stream_token,
]

#: Under ``/admin``: the scheduler, the providers and the configured models.
ADMIN_ROUTES = [*admin.ROUTES, *admin_providers.ROUTES, *admin_models.ROUTES, *admin_jobs.ROUTES]


#: Response headers a cross-origin page may read (provenance, lenient drops, rate limits, the
#: place in the queue, the trace).
EXPOSED = [
    "x-loom-model",
    "x-loom-provider",
    "x-loom-work-id",
    "x-loom-ignored",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-loom-queue-position",
    "x-loom-trace-id",
]


def cors_config(config: Config) -> CORSConfig | None:
    """``[daemon.cors]``: pages on the named origins may call the API from a browser (a
    preflight from any other origin is refused); off while ``origins`` is empty. Credentials
    travel as headers (``Authorization``), never cookies, so none are allowed."""
    cors = config.daemon.cors
    if not cors.origins:
        return None
    return CORSConfig(allow_origins=list(cors.origins), expose_headers=EXPOSED, max_age=cors.max_age)


def create_app(
    config: Config,
    extra_plugins: dict[str, object] | None = None,
    config_path: Path | None = None,
    span_exporter: Any = None,
) -> Litestar:
    """Build the services from ``config`` and the app that serves them (ConfigError / PluginError
    stop start-up). ``config_path`` is the file ``config`` came from: models added while running
    are written there. ``span_exporter`` (a test's in-memory OpenTelemetry exporter) turns
    traces on."""
    return app_for(build_services(config, extra_plugins, config_path, span_exporter))


def plugin_router(services: Services, own: list[Router | HTTPRouteHandler]) -> list[Router]:
    """The routes plugins register (``register_routes``), behind the ``/v1`` key guard, with
    the daemon's RouteContext injected as ``loom``; none when no plugin registers any. A handler
    marked ``opt={"public": True}`` checks its own credential (a signed URL) and has no guard.
    ``own`` are Loom's routes, which no plugin may claim."""
    loom = DaemonRouteContext(
        runner=services.runner,
        registry=services.registry,
        router=services.router,
        routes=services.routes,
        files=services.files,
        records=services.records,
        signer=services.storage.signer,
    )
    handlers = collect_routes(services.pm, services.plugins, loom, own)
    provide = {"loom": Provide(lambda: loom, use_cache=True, sync_to_thread=False)}
    public = [h for h in handlers if not isinstance(h, Router) and h.opt.get("public")]
    guarded = [h for h in handlers if not any(h is p for p in public)]
    guards = key_guards(services.keys, services.tokens, admin=False)
    routers = [Router(path="/", route_handlers=guarded, guards=guards, dependencies=provide)] if guarded else []
    if public:
        routers.append(Router(path="/", route_handlers=public, dependencies=provide))
    return routers


def middleware(services: Services) -> list:
    """The ASGI middleware, outermost first: the access log, the request's span (only when
    traces are on: off, it is not there at all), upstream keys, answering requests cut by
    shutdown, and the caller's principal: with keys the key guard resolves it (and names it to
    the scheduler, ``current_principal``), and the quotas' headers and in-flight places are
    settled around the request (only when quotas are set); without keys every request is the
    one local principal's (principals.py)."""
    out: list = [access_log]
    if services.tracing is not None:
        out.append(services.tracing.middleware())
    out.append(credentials.middleware)
    out.append(answer_when_cut(services.shutdown))
    if not services.keys.enabled:
        out.append(single_user)
    elif services.quotas.enabled:
        out.append(quota_middleware)
    return out


def app_for(services: Services) -> Litestar:
    """The Litestar app serving ``services``; its lifespan opens and closes them."""
    signer = services.storage.signer  # signed /v1/files URLs stand in for the key
    quotas = services.quotas  # per principal, on /v1 and /api (not /admin)
    v1 = Router(
        path="/v1",
        route_handlers=V1_ROUTES,
        guards=key_guards(services.keys, services.tokens, admin=False, signer=signer, quotas=quotas),
    )
    operator = Router(
        path="/",
        guards=key_guards(services.keys, services.tokens, admin=True),
        route_handlers=[Router(path="/admin", route_handlers=ADMIN_ROUTES), admin.metrics],
    )
    # Ollama's API (daemon/api/ollama.py): its own error shape; pulling and removing models
    # takes an admin key, as /admin/models does.
    ollama_api = [
        Router(
            path="/api",
            route_handlers=routes,
            guards=key_guards(services.keys, services.tokens, admin=admin, quotas=quotas),
            exception_handlers=ollama.exception_handlers(),
        )
        for routes, admin in ((ollama.ROUTES, False), (ollama.ADMIN_ROUTES, True))
    ]
    # Rerank where Cohere's and Jina's clients look too (a base URL without /v1), guarded as /v1.
    unversioned = Router(
        path="/", route_handlers=rerank.UNVERSIONED, guards=key_guards(services.keys, services.tokens, admin=False)
    )
    ui = build_ui(services.sessions)
    own: list[Router | HTTPRouteHandler] = [health, v1, unversioned, *ollama_api, operator, ui.router]
    app = Litestar(
        route_handlers=[*own, *plugin_router(services, own)],
        template_config=ui.template_config,
        dependencies=services.dependencies(),
        lifespan=[services.lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors_config(services.config),
        middleware=middleware(services),
        openapi_config=OpenAPIConfig(
            title="Loom",
            version="0.1.0",
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
        # Loom reads bodies itself (strict decoding, its own size limit and error shape).
        request_max_body_size=None,
    )
    fix_allow(app)
    openapi.finish(app.openapi_schema, keys=services.keys.enabled)  # ~6 ms: the document is built once, here
    return app
