"""The web UI at ``/ui`` (seed 004's demo and evaluation pages), served by the daemon itself.

Server-rendered by Litestar's Jinja support, made live by htmx over SSE; htmx and its SSE
extension are vendored under ``static/`` (no CDN, no front-end build). Pages read the daemon's
services in-process and call the same functions as the API's routes.

- ``/ui/``: jobs, live; ``/ui/jobs/{id}``: stages, steps, outputs; ``/ui/jobs/{id}/lineage``:
  the beam search's tree with every candidate's image, prompts, scores, critique and reasons.
- ``/ui/batches``: OpenAI batches with their status and request counts, each linked to its job.
- ``/ui/pipelines/{name}``: a form from the pipeline's parameter schema.
- ``/ui/models``: models and providers, with load, unload and switch (admin).
- ``/ui/evaluate``: A/B preferences, stored for ``GET /v1/evaluations``.

Handlers get the daemon's services by dependency injection, as the API's do
(``runner: NamedDependency[JobRunner]``, ``evaluations``, ``sessions``, ...); nothing is kept on
app state.

Security: the router's guard follows the API keys (``session.py``), declared once on the /ui
Router; every form carries a CSRF token (Litestar's CSRF middleware, on this router only: the
API's clients send no cookies); templates autoescape everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from litestar import Router
from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from ..http.sessions import Sessions, session_guard
from . import batches, evaluate, jobs, live, login, models, pipelines
from .render import EXCEPTION_HANDLERS, template_config

STATIC = Path(__file__).resolve().parent / "static"
CSRF_COOKIE = "loom_csrf"
CSRF_HEADER = "x-csrftoken"


@dataclass(frozen=True)
class WebUI:
    """What the app needs to serve /ui: its router (guard, CSRF, error pages) and its templates."""

    router: Router
    template_config: TemplateConfig


def build_ui(sessions: Sessions) -> WebUI:
    csrf = CSRFConfig(
        secret=sessions.csrf_secret,
        cookie_name=CSRF_COOKIE,
        cookie_path="/ui",
        header_name=CSRF_HEADER,
        cookie_httponly=True,
        cookie_samesite="strict",
    )
    static = create_static_files_router(
        path="/static", directories=[STATIC], name="ui-static", opt={"public": True}, include_in_schema=False
    )
    router = Router(
        path="/ui",
        route_handlers=[
            *login.ROUTES,
            *live.ROUTES,
            *jobs.ROUTES,
            *batches.ROUTES,
            *pipelines.ROUTES,
            *models.ROUTES,
            *evaluate.ROUTES,
            static,
        ],
        guards=[session_guard(sessions)],
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    return WebUI(router=router, template_config=template_config())
