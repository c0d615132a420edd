"""``/ui/login`` and ``/ui/logout``: a key in, an HttpOnly session cookie out (see session.py)."""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect

from ..http.sessions import COOKIE, COOKIE_PATH, SESSION_S, Sessions
from .render import page, safe_next

PUBLIC = {"public": True}
#: A wrong key costs this long, so guessing from a browser is slow.
FAILED_LOGIN_DELAY_S = 0.5


def _cookie(request: Request, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


@get("/login", opt=PUBLIC, name="ui-login")
async def login_form(request: Request, sessions: NamedDependency[Sessions]) -> Response:
    target = safe_next(request.query_params.get("next"))
    if not sessions.enabled:
        return Redirect(target, status_code=303)
    return page(request, "login.html", next=target, error=None)


@post("/login", opt=PUBLIC)
async def login(request: Request, sessions: NamedDependency[Sessions]) -> Response:
    form = await request.form()
    target = safe_next(form.get("next"))
    token = sessions.issue(str(form.get("key") or "").strip())
    if token is None:
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)
        return page(request, "login.html", status_code=401, next=target, error="That key is not valid.")
    return Redirect(target, status_code=303, cookies=[_cookie(request, token, SESSION_S)])


@post("/logout", opt=PUBLIC)
async def logout(request: Request) -> Response:
    return Redirect("/ui/login", status_code=303, cookies=[_cookie(request, "", 0)])


ROUTES = [login_form, login, logout]
