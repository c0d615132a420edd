"""Which model serves a request: the one named (or what it was switched to), then its fallbacks.

A fallback is taken when the first choice is marked unhealthy, fails (provider error, timeout,
out of memory, full queue, an upstream's 429), cannot be made resident, or (``fallback_on_queue``)
would have to wait behind too many others. For a stream only before its first chunk: after that,
the client has seen the first model's words.

Runtime switching (seed 004) sends a model's requests, or every request of a capability, to
another model without a restart. A model switch wins over a capability switch; both are kept in
``<data_dir>/routing.json`` so they survive a restart, and are undone by switching to ``None``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

from loom.sdk.calls import Call
from loom.sdk.errors import (
    CapabilityNotSupported,
    InvalidRequest,
    LoomError,
    ModelNotFound,
    ProviderError,
    QueueFull,
    Unavailable,
)
from loom.sdk.protocols import RunContext
from loom.sdk.types import Capability

from .atomic import write_atomic
from .models import ModelEntry, ModelRegistry
from .scheduler import Priority, Scheduler

log = logging.getLogger("loom.routing")
FALLBACK_ON = (ProviderError, Unavailable, QueueFull)
STATE_VERSION = 1
#: The switches' file in the data dir.
STATE_FILE = "routing.json"
#: Makes the call for one model of a chain (a chat request fitted to that model's parameters).
CallFor = Callable[[ModelEntry], Call]


def _same(call: Call) -> CallFor:
    return lambda _entry: call


class ModelRouter:
    def __init__(self, registry: ModelRegistry, scheduler: Scheduler, state_path: Path | None = None) -> None:
        self.registry = registry
        self.scheduler = scheduler
        #: model id -> model id that serves its requests instead (runtime switching).
        self.overrides: dict[str, str] = {}
        #: capability -> model id that serves every request of that capability instead.
        self.capability_overrides: dict[Capability, str] = {}
        #: model id -> False when a health check found its provider unreachable.
        self.healthy: dict[str, bool] = {}
        #: Where switches are kept (``<data_dir>/routing.json``); None keeps them in memory only.
        self.state_path = state_path

    # --- choosing -----------------------------------------------------------------------------

    def first_choice(self, name: str, capability: Capability) -> tuple[ModelEntry, ModelEntry]:
        """(the model named, the model that serves it after switches); raises for an unknown
        model or one without the capability."""
        named = self.registry.for_capability(name, capability)
        return named, self._switched(named, capability)

    def _switched(self, named: ModelEntry, capability: Capability) -> ModelEntry:
        target = self.overrides.get(named.id) or self.capability_overrides.get(capability)
        if target is not None:
            entry = self.registry.get(target)
            # A model switched to one that lacks this capability keeps serving it itself.
            if capability in entry.capabilities:
                return entry
        return named

    def candidates(self, name: str, capability: Capability) -> list[ModelEntry]:
        """The entries to try for model ``name``, in order (:meth:`chain`); raises for an
        unknown model or one without the capability."""
        return self.chain(self.registry.for_capability(name, capability), capability)

    def chain(self, named: ModelEntry, capability: Capability) -> list[ModelEntry]:
        """The entries to try for ``named`` (a model with ``capability``), in order: the first
        choice, its fallbacks, then (when switched) the named model's fallbacks. Unhealthy ones
        are left out unless nothing else is left. A request resolves this once and carries it
        (:meth:`stream_on`, :meth:`collect_on`)."""
        first = self._switched(named, capability)
        chain = [first]
        for source in (first, named):
            for fallback in source.config.fallbacks:
                entry = self.registry.get(fallback)
                if capability in entry.capabilities and entry not in chain:
                    chain.append(entry)
        healthy = [e for e in chain if self.healthy.get(e.id, True)]
        return healthy or chain

    def route_for(self, capability: Capability | str, configured: str | None) -> str | None:
        """The model a capability route (``[routes]``) resolves to now: the capability's switch,
        else ``configured``. Callers that pick a default model by role should ask this."""
        return self.capability_overrides.get(Capability(capability)) or configured

    def _queue_too_long(self, entry: ModelEntry) -> bool:
        """``fallback_on_queue = N``: at most N requests wait for ``entry``; the next falls back."""
        limit = entry.config.fallback_on_queue
        if limit is None:
            return False
        busy, waiting = self.scheduler.queue_state(entry)
        return busy and waiting >= limit

    # --- running ------------------------------------------------------------------------------

    def _next(self, chain: list[ModelEntry], i: int) -> bool:
        """Whether ``chain[i]`` should be passed over for a full queue (never the last one)."""
        if i < len(chain) - 1 and self._queue_too_long(chain[i]):
            log.info("%s has a long queue; falling back to %s", chain[i].id, chain[i + 1].id)
            return True
        return False

    async def run(
        self,
        name: str,
        capability: Capability,
        call: Call,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, Any]:
        chain = self.candidates(name, capability)
        return await self._first_served(self.scheduler.run, chain, _same(call), priority, ctx)

    async def collect(
        self,
        name: str,
        capability: Capability,
        call: Call,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, list[Any]]:
        return await self.collect_on(self.candidates(name, capability), _same(call), priority=priority, ctx=ctx)

    async def collect_on(
        self,
        chain: list[ModelEntry],
        call_for: CallFor,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, list[Any]]:
        """A streaming call run to its end on the first of ``chain`` that serves it, its chunks as
        one list (:meth:`Scheduler.collect`); the client sees nothing before the end, so a failure
        at any point falls back, as for :meth:`run`."""
        return await self._first_served(self.scheduler.collect, chain, call_for, priority, ctx)

    async def _first_served(
        self,
        method: Callable[..., Awaitable[Any]],
        chain: list[ModelEntry],
        call_for: CallFor,
        priority: Priority,
        ctx: RunContext | None,
    ) -> tuple[ModelEntry, Any]:
        for i, entry in enumerate(chain):
            if self._next(chain, i):
                continue
            call = call_for(entry)
            try:
                return entry, await method(entry, call, priority=priority, ctx=ctx)
            except FALLBACK_ON as e:
                if i == len(chain) - 1:
                    raise
                log.warning("%s failed (%s); falling back to %s", entry.id, e.message, chain[i + 1].id)
        raise AssertionError("unreachable")

    async def stream(
        self,
        name: str,
        capability: Capability,
        call: Call,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, AsyncGenerator[Any, None]]:
        return await self.stream_on(self.candidates(name, capability), _same(call), priority=priority, ctx=ctx)

    async def stream_on(
        self,
        chain: list[ModelEntry],
        call_for: CallFor,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> tuple[ModelEntry, AsyncGenerator[Any, None]]:
        """Start a stream on the first of ``chain`` that produces a first chunk; return it and
        the rest. ``call_for`` makes the call for the model about to be tried: an error it raises
        (the parameter policy refusing what that model does not honour) ends the request."""
        for i, entry in enumerate(chain):
            if self._next(chain, i):
                continue
            gen = self.scheduler.stream(entry, call_for(entry), priority=priority, ctx=ctx)
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

    # --- runtime switching --------------------------------------------------------------------

    def switch(self, name: str, to: str | None) -> dict:
        """Send the requests of model ``name`` (an id or alias), or else of capability ``name``, to
        model ``to``; ``to=None`` undoes it. Persisted at once. Returns what now serves ``name``."""
        if _is_known(self.registry, name):
            return self.switch_model(name, to)
        return self.switch_capability(name, to)

    def switch_model(self, name: str, to: str | None) -> dict:
        entry = self.registry.get(name)
        if to is None or self._target(to).id == entry.id:
            self.overrides.pop(entry.id, None)
        else:
            target = self._target(to)
            if not entry.capabilities & target.capabilities:
                raise InvalidRequest(
                    f"model '{target.id}' can do none of what '{entry.id}' does ({_names(entry.capabilities)})",
                    param="to",
                )
            self.overrides[entry.id] = target.id
        self.save()
        return self.describe_model(entry)

    def switch_capability(self, name: str, to: str | None) -> dict:
        try:
            capability = Capability(name)
        except ValueError:
            raise ModelNotFound(
                f"No model and no capability named '{name}' (capabilities: {_names(Capability)})",
                param="model",
            ) from None
        if to is None:
            self.capability_overrides.pop(capability, None)
        else:
            target = self._target(to)
            if capability not in target.capabilities:
                raise CapabilityNotSupported(
                    f"model '{target.id}' cannot do {capability.value} (it does {_names(target.capabilities)})",
                    param="to",
                )
            self.capability_overrides[capability] = target.id
        self.save()
        return {"capability": capability.value, "served_by": self.capability_overrides.get(capability)}

    def forget(self, model_id: str) -> None:
        """Drop what refers to a model that was removed: its health and the switches from or to it."""
        self.healthy.pop(model_id, None)
        before = self.switches()
        self.overrides = {m: to for m, to in self.overrides.items() if model_id not in (m, to)}
        self.capability_overrides = {c: to for c, to in self.capability_overrides.items() if to != model_id}
        if self.switches() != before:
            self.save()

    def _target(self, to: str) -> ModelEntry:
        try:
            return self.registry.get(to)
        except ModelNotFound as e:
            raise ModelNotFound(e.message, param="to") from None

    def describe_model(self, entry: ModelEntry) -> dict:
        """Which model serves each capability of ``entry`` now (itself unless switched)."""
        capabilities = sorted(entry.capabilities, key=lambda c: c.value)
        serves = {c.value: self.first_choice(entry.id, c)[1].id for c in capabilities}
        return {"model": entry.id, "switched_to": self.overrides.get(entry.id), "served_by": serves}

    def switches(self) -> dict:
        return {
            "models": dict(sorted(self.overrides.items())),
            "capabilities": dict(sorted((c.value, m) for c, m in self.capability_overrides.items())),
        }

    # --- persistence --------------------------------------------------------------------------

    def save(self) -> None:
        """Write the switches to ``state_path`` atomically (a crash leaves the old file)."""
        if self.state_path is None:
            return
        data = {"version": STATE_VERSION, **self.switches()}
        write_atomic(self.state_path, (json.dumps(data, indent=2) + "\n").encode())

    def load(self, path: Path) -> None:
        """Adopt ``path`` as the state file and restore its switches. Switches naming models that
        are no longer configured are dropped with a warning; an unreadable file is set aside."""
        self.state_path = path
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            models, capabilities = dict(data.get("models", {})), dict(data.get("capabilities", {}))
        except (OSError, ValueError, TypeError, AttributeError) as e:
            aside = path.with_suffix(".json.bad")
            log.warning("cannot read %s (%s); moved it to %s and starting without switches", path, e, aside)
            path.replace(aside)
            return
        for name, to in models.items():
            self._restore(self.switch_model, name, to)
        for name, to in capabilities.items():
            self._restore(self.switch_capability, name, to)

    def _restore(self, switch: Callable[[str, str | None], dict], name: str, to: Any) -> None:
        try:
            if not isinstance(to, str):
                raise InvalidRequest(f"not a model id: {to!r}")
            switch(name, to)
        except LoomError as e:
            log.warning("dropping the switch of %r to %r from %s: %s", name, to, self.state_path, e.message)
            self.save()


def _is_known(registry: ModelRegistry, name: str) -> bool:
    try:
        registry.get(name)
    except ModelNotFound:
        return False
    return True


def _names(capabilities) -> str:
    return ", ".join(sorted(c.value for c in capabilities)) or "nothing"


async def _empty() -> AsyncGenerator[Any, None]:
    return
    yield


async def _prepend(first: Any, gen: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    try:
        yield first
        async for item in gen:
            yield item
    finally:
        await gen.aclose()


__all__ = ["FALLBACK_ON", "CallFor", "ModelRouter"]
