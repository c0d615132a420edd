"""`loom serve`'s HTTP server: uvicorn, with Loom's graceful shutdown.

On SIGTERM (or Ctrl-C) the server stops accepting connections and closes idle ones, the app is
told (:meth:`Services.drain <loom.daemon.services.Services.drain>`: running jobs are stopped and
left ``interrupted``, resumable from their last finished step; streams that only watch end), and
calls in flight (a chat answer, an image) get up to ``[daemon] shutdown_grace`` to finish. A second
SIGTERM or Ctrl-C, or the end of the grace period, cuts what is left; either way the lifespan then
closes the services, which flushes every store (SQLite checkpointed, retrieval indices saved).
A third signal exits at once.

uvicorn's own shutdown skips the lifespan on a second Ctrl-C and waits for every connection,
watch-only streams included, so :meth:`GracefulServer.shutdown` replaces it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import socket
from types import FrameType

import uvicorn

from .services import Services

log = logging.getLogger("loom")
#: How long cut tasks get to unwind (their ``finally`` blocks) before the lifespan shuts down.
CUT_WAIT_S = 2.0


class RedactTokens(logging.Filter):
    """Stream tokens travel in URLs (``?token=``, for EventSource): keep them out of the access log."""

    PATTERN = re.compile(r"(token=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        return True


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, services: Services, grace: float) -> None:
        super().__init__(config)
        self.services, self.grace = services, grace
        self.signals = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up built (the app, its OpenAPI document, the plugins and their imports) lives
        # as long as the process: frozen, the collector stops walking it on every full collection,
        # which a request's garbage otherwise triggers often enough to cost several per cent.
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals >= 3:
            # Nothing more is waited for; the WAL keeps every committed write anyway.
            os._exit(128 + signal.SIGTERM)
        self.should_exit = True  # the first: uvicorn's main loop ends and calls shutdown()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for server in self.servers:
            server.close()  # no new connections
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive closed, busy ones closed after their response
        await self.services.drain()
        deadline = loop.time() + self.grace
        if self.server_state.tasks:
            log.info(
                "shutting down: %d call(s) in flight get up to %gs to finish (send SIGTERM again to cut them)",
                len(self.server_state.tasks),
                self.grace,
            )
        # uvicorn's set of tasks in flight has no event to wait on: poll it.
        while self.server_state.tasks and self.signals < 2 and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self.server_state.tasks:
            why = "a second signal" if self.signals >= 2 else f"the grace period ({self.grace:g}s)"
            log.warning("shutting down: %s ended the wait; cutting %d call(s)", why, len(self.server_state.tasks))
            for task in list(self.server_state.tasks):
                task.cancel(msg="Loom is shutting down")
            cut_deadline = loop.time() + CUT_WAIT_S
            while self.server_state.tasks and loop.time() < cut_deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await self.lifespan.shutdown()  # closes the services: stores flushed


def serve(app, services: Services, *, host: str, port: int, log_level: str, grace: float) -> None:
    """Run ``app`` until a signal stops it, shutting down as the module docstring says."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    GracefulServer(config, services, grace).run()
