"""A single-consumer channel on the event loop: what a stream's chunks pass through.

``asyncio.Queue`` does more than a stream needs (bounds, several getters, task accounting); a
token costs two of these hops on the way to the client, so the lighter one is worth having.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Channel:
    """``put_nowait`` on the loop (or via ``call_soon_threadsafe``), ``await get()`` by one consumer."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait(self) -> Any:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items
