"""One access-log line per request: method, path, status, the model that served it, and the time.

uvicorn's access log knows neither the model (Loom names it in ``x-loom-model``) nor how long the
request took, so Loom writes its own on the ``loom.access`` logger at INFO (``[daemon] log_level =
"warning"`` silences it; uvicorn's own stays on only under ``debug``). A streamed answer's line is
written when the stream ends, with the whole time. Query strings are left out: stream tokens
travel there (``?token=``). With traces on, the line ends with the request's trace id
(``trace=...``), which the tracing middleware leaves in the scope.
"""

from __future__ import annotations

import logging
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("loom.access")
#: Where the tracing middleware (:mod:`loom.daemon.tracing.http`) leaves the trace id.
TRACE_ID_KEY = "loom.trace_id"


def access_log(app: ASGIApp) -> ASGIApp:
    """ASGI middleware (a Litestar ``middleware=`` entry) writing the line."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status, model = 0, "-"

        async def sending(message: Message) -> None:
            nonlocal status, model
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers") or ():
                    if name == b"x-loom-model":
                        model = value.decode("latin-1")
                        break
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            client = scope.get("client")
            trace_id = scope.get(TRACE_ID_KEY)
            log.info(
                '%s "%s %s" %s model=%s %.1f ms%s',
                client[0] if client else "-",
                scope.get("method", "-"),
                scope["path"],
                status or "-",
                model,
                (time.perf_counter() - start) * 1000,
                f" trace={trace_id}" if trace_id else "",
            )

    return middleware
