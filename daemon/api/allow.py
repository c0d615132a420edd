"""``Allow`` on OPTIONS names every method of the path.

Litestar makes a path's OPTIONS handler when the path's first handler is registered, and it keeps
that handler when a second one (another method on the same path) joins the route, so its
``Allow`` lists only the first method (``/admin/models`` answered ``GET, OPTIONS`` without
``POST``). This ``before_send`` hook sets the header from the finished routes instead. (405
answers carry the right ``Allow`` already; :mod:`.errors` passes it on.)
"""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


def _plain(path: str) -> str:
    """``/v1/responses/{response_id:str}`` and ``/v1/responses/{response_id}`` alike."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def fix_allow(app: Litestar) -> None:
    methods = {
        _plain(route.path): ", ".join(sorted(route.methods)).encode()
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        allow = methods.get(_plain(scope.get("path_template", "")))
        if allow is not None:
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            message["headers"] = [*headers, (b"allow", allow)]

    app.before_send.append(before_send)
