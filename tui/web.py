"""``loom tui --web``: the TUI in a browser, for a machine reached without a terminal.

textual-serve runs ``loom tui`` as a subprocess per browser tab and streams it to xterm.js in
the page. textual-serve has no access control, and whoever opens the page drives the TUI with
this process's API key, so the server asks for a random token (printed in the URL, as Jupyter
does); the first request with it sets an HttpOnly cookie that the page's WebSocket then carries.
"""

from __future__ import annotations

import hmac
import secrets
import shlex
import sys

from aiohttp import web
from textual_serve.server import Server

COOKIE = "loom_tui_token"
DEFAULT_PORT = 11436


class TokenServer(Server):
    """textual-serve's server, behind a token."""

    def __init__(self, command: str, host: str, port: int, token: str, public_url: str | None = None) -> None:
        super().__init__(command, host=host, port=port, title="Loom", public_url=public_url)
        self.token = token

    def allowed(self, request: web.Request) -> bool:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()

        @web.middleware
        async def require_token(request: web.Request, handler):
            if request.path.startswith("/static/"):  # xterm.js, fonts: nothing private
                return await handler(request)
            if not self.allowed(request):
                raise web.HTTPForbidden(text="Open the URL that `loom tui --web` printed (it carries the token).\n")
            response = await handler(request)
            if "token" in request.query and not response.prepared:
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
            return response

        app.middlewares.append(require_token)
        return app


def command(url: str | None) -> str:
    """The shell command textual-serve runs per tab: this interpreter's ``loom tui``."""
    parts = [sys.executable, "-m", "loom.daemon.cli", "tui"]
    if url:
        parts += ["--url", url]
    return shlex.join(parts)


def serve(url: str | None, host: str, port: int, public_url: str | None = None, token: str | None = None) -> int:
    token = token or secrets.token_urlsafe(24)
    server = TokenServer(command(url), host, port, token, public_url)
    print(f"Loom TUI in the browser: {server.public_url}/?token={token}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("Serving beyond this machine: the token is the only lock, and HTTP is not encrypted.", flush=True)
    server.serve()
    return 0
