"""Which model serves a request: the one named, then its fallbacks, in order.

A fallback is taken when the first choice is marked unhealthy, fails (provider error, timeout,
out of memory, full queue) or cannot be made resident. For a stream only before its first chunk:
after that, the client has seen the first model's words.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from loom.sdk.errors import CapabilityNotSupported, LoomError, ProviderError, QueueFull, Unavailable
from loom.sdk.protocols import RunContext
from loom.sdk.types import Capability

from .models import ModelEntry, ModelRegistry
from .scheduler import Priority, Scheduler

log = logging.getLogger("loom.routing")
FALLBACK_ON = (ProviderError, Unavailable, QueueFull)


class ModelRouter:
    def __init__(self, registry: ModelRegistry, scheduler: Scheduler) -> None:
        self.registry = registry
        self.scheduler = scheduler
        #: model id -> model id that serves it instead (runtime switching); see switch().
        self.overrides: dict[str, str] = {}
        #: model id -> False when a health check found its provider unreachable.
        self.healthy: dict[str, bool] = {}

    def candidates(self, name: str, capability: Capability) -> list[ModelEntry]:
        """The entries to try, in order; raises for an unknown model or a missing capability."""
        first = self.registry.for_capability(name, capability)
        chain = [first]
        for fallback in first.config.fallbacks:
            entry = self.registry.get(fallback)
            if capability in entry.capabilities and entry not in chain:
                chain.append(entry)
        chain = [self.registry.get(self.overrides[e.id]) if e.id in self.overrides else e for e in chain]
        for e in chain:
            if capability not in e.capabilities:
                raise CapabilityNotSupported(
                    f"model '{e.id}' (switched in for '{name}') cannot do {capability.value}",
                    param="model",
                )
        healthy = [e for e in chain if self.healthy.get(e.id, True)]
        return healthy or chain

    async def run(
        self,
        name: str,
        capability: Capability,
        call: Callable,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, Any]:
        chain = self.candidates(name, capability)
        for i, entry in enumerate(chain):
            try:
                return entry, await self.scheduler.run(entry, call, priority=priority, ctx=ctx)
            except FALLBACK_ON as e:
                if i == len(chain) - 1:
                    raise
                log.warning("%s failed (%s); falling back to %s", entry.id, e.message, chain[i + 1].id)
        raise AssertionError("unreachable")

    async def stream(
        self,
        name: str,
        capability: Capability,
        call: Callable,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, AsyncIterator[Any]]:
        """Start a stream on the first model that produces a first chunk; return it and the rest."""
        chain = self.candidates(name, capability)
        for i, entry in enumerate(chain):
            gen = self.scheduler.stream(entry, call, priority=priority, ctx=ctx)
            try:
                first = await gen.__anext__()
            except StopAsyncIteration:
                return entry, _empty()
            except FALLBACK_ON as e:
                await gen.aclose()
                if i == len(chain) - 1:
                    raise
                log.warning("%s failed (%s); falling back to %s", entry.id, e.message, chain[i + 1].id)
                continue
            return entry, _prepend(first, gen)
        raise AssertionError("unreachable")


async def _empty():
    return
    yield


async def _prepend(first, gen: AsyncIterator) -> AsyncIterator:
    try:
        yield first
        async for item in gen:
            yield item
    finally:
        await gen.aclose()


__all__ = ["ModelRouter", "LoomError"]
