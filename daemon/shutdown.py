"""The daemon's shutdown signal: set when SIGTERM arrives, before calls in flight are waited for.

Streams that only watch (a job's events, the scheduler's events) would otherwise hold their
connections open for the whole grace period and be cut at its end; instead they end as soon as
shutdown begins, and a client reconnects to the next daemon (``Last-Event-ID`` picks up where it
left off). Streams that carry a call's answer (chat, responses) are calls in flight: they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


class Shutdown:
    """Set once, by the server (:mod:`loom.daemon.serving`); routes ask for it as ``shutdown``."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def begun(self) -> bool:
        return self._event.is_set()

    def begin(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    async def until(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield from ``source`` until it ends or shutdown begins (then ``source`` is closed)."""
        it = aiter(source)
        stop = asyncio.ensure_future(self._event.wait())
        try:
            while not self.begun:
                step = asyncio.ensure_future(anext(it))
                await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    return
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            stop.cancel()
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
