"""Rendering /ui: the Jinja environment (autoescaped), its filters, pages, fragments for SSE, and
errors as HTML pages.

Every value that came from a user (prompts, reasons, model output, file names) reaches the page
through Jinja's autoescape; no template marks anything ``|safe``. Fragments pushed over SSE are
rendered by the same templates with the same context, so a live update and a reload agree.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from litestar.types import ExceptionHandlersMap
from loom.sdk.errors import LoomError

from ..http.errors import status_of
from ..http.sessions import LoginRequired, viewer_of

log = logging.getLogger("loom.ui")
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _size(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _number(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _file_url(path: str | None) -> str:
    """``/ui/files/<path>``: the data dir's public files, behind the UI's session."""
    return "/ui/files/" + quote(path or "", safe="/")


def _setup(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.filters.update(when=_when, duration=_duration, size=_size, number=_number, pretty=_pretty, file_url=_file_url)
    env.trim_blocks = True
    env.lstrip_blocks = True
    assert env.autoescape is True  # Litestar's default; the UI's safety depends on it


def template_config() -> TemplateConfig:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_setup)


def context(request: Request, **values: Any) -> dict[str, Any]:
    viewer = viewer_of(request)
    return {
        "request": request,
        "keys_on": viewer.keys_on,
        "role": viewer.role,
        "is_admin": viewer.is_admin,
        "here": request.url.path,
        **values,
    }


def page(request: Request, name: str, status_code: int = 200, **values: Any) -> Template:
    return Template(template_name=name, context=context(request, **values), status_code=status_code)


def fragment(request: Request, name: str, **values: Any) -> str:
    """A template rendered to a string (for an SSE message)."""
    engine = request.app.template_engine
    assert engine is not None, "the app serving /ui has a template config (daemon/ui)"
    return engine.get_template(name).render(**context(request, **values))


def safe_next(target: str | None) -> str:
    """Where to go after login: a path inside /ui, never another site."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


# --- errors as pages ----------------------------------------------------------------------------


def _error_page(request: Request, status: int, message: str, kind: str) -> Response:
    return page(request, "error.html", status_code=status, status=status, message=message, kind=kind)


def login_redirect(request: Request, exc: LoginRequired) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or request.headers.get("accept", "").startswith("text/event-stream"):
        return _error_page(request, 401, "Sign in first: your session has ended.", "authentication_error")
    return Redirect(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def loom_error(request: Request, exc: LoomError) -> Response:
    return _error_page(request, status_of(exc), exc.message, exc.type)


def http_error(request: Request, exc: HTTPException) -> Response:
    return _error_page(request, exc.status_code, str(exc.detail), "invalid_request_error")


def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_page(request, 500, f"Internal error: {type(exc).__name__}", "server_error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoginRequired: login_redirect,
    LoomError: loom_error,
    HTTPException: http_error,
    Exception: unexpected,
}
