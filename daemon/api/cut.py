"""An HTTP call cut by shutdown (a second SIGTERM, or the grace period over) still gets an answer.

:class:`~loom.daemon.serving.GracefulServer` cancels the calls still running when it stops waiting;
this middleware turns the cancellation of one whose response has not started into a 503 in
OpenAI's error shape (the ``openai`` package retries it against the next daemon), instead of the
plain-text 500 the server would send. A call whose response has started (a stream) just ends.
"""

from __future__ import annotations

import asyncio

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from loom.sdk.errors import Unavailable

from ..http.errors import error_body
from ..shutdown import Shutdown


def answer_when_cut(shutdown: Shutdown):
    """The middleware factory (``Litestar(middleware=[answer_when_cut(shutdown)])``)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = False

            async def tracking(message: Message) -> None:
                nonlocal started
                started = started or message["type"] == "http.response.start"
                await send(message)

            try:
                await app(scope, receive, tracking)
            except asyncio.CancelledError:
                if started or not shutdown.begun:
                    raise
                body = error_body(Unavailable("Loom is shutting down: the call was cut before it finished"))
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})

        return wrapped

    return middleware
