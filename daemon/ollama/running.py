"""Running an Ollama chat or generate request on Loom's generations, and what ``/api/ps`` shows.

A request is translated (:mod:`.translate`), prepared as any chat request is (rules, route,
parameter policy), and run through the same :class:`~loom.daemon.api.chat.Generations` as Chat
Completions: the same router, queues and scheduler. Its keep-alive applies once it has run.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import msgspec
from loom.sdk.errors import LoomError

from ..chat.generations import Generations
from ..models import ModelEntry
from ..scheduler import Scheduler
from . import info
from .answer import Answer, Clock, now
from .names import names_of
from .wire import (
    OllamaChatAnswer,
    OllamaError,
    OllamaGenerateAnswer,
    OllamaOutMessage,
    OllamaRunningList,
    OllamaRunningModel,
)

_encode = msgspec.json.encode


class Run:
    """One generation, timed, and its keep-alive."""

    def __init__(self, scheduler: Scheduler, entry: ModelEntry, keep: float | None, clock: Clock) -> None:
        self.scheduler, self.entry, self.keep, self.clock = scheduler, entry, keep, clock

    async def start(self, gens: Generations) -> ModelEntry:
        """Start the generation (errors before the first chunk keep their status)."""
        resident = self.scheduler.is_loaded(self.entry)
        self.clock.call()
        served = await gens.start()
        load = None if resident else self.scheduler.model_state(served).get("load_seconds")
        self.clock.started(load)
        self.entry = served
        return served

    async def lines(self, gens: Generations, answer: Answer) -> AsyncIterator[OllamaChatAnswer | OllamaGenerateAnswer]:
        """The streamed lines: one per chunk with text, the tool calls, the final one."""
        async for _, chunks in gens:
            async for chunk in chunks:
                line = answer.add(chunk)
                if line is not None:
                    yield line
        calls = answer.calls_line()
        if calls is not None:
            yield calls
        yield answer.final(whole=False)

    async def ndjson(self, gens: Generations, answer: Answer) -> AsyncIterator[bytes]:
        """The stream's bytes; an error after the first line is one more line, ``{"error": ...}``."""
        try:
            async for line in self.lines(gens, answer):
                yield _encode(line) + b"\n"
        except LoomError as e:
            yield _encode(OllamaError(e.message)) + b"\n"
        finally:
            await self.settle()

    async def whole(self, gens: Generations, answer: Answer) -> OllamaChatAnswer | OllamaGenerateAnswer:
        try:
            async for _ in self.lines(gens, answer):
                pass
        finally:
            await self.settle()
        return answer.final(whole=True)

    async def settle(self) -> None:
        """Apply the request's keep-alive (0: unload now its work is done)."""
        if self.keep is not None:
            await self.scheduler.keep_alive(self.entry, self.keep)


async def load_or_unload(
    scheduler: Scheduler, entry: ModelEntry, model: str, keep: float | None, chat: bool
) -> OllamaChatAnswer | OllamaGenerateAnswer:
    """An empty request: load the model (``done_reason`` "load") or, with ``keep_alive`` 0,
    unload it ("unload"), as Ollama does."""
    if keep == 0:
        await scheduler.unload(entry)
        reason = "unload"
    else:
        await scheduler.load(entry)
        if keep is not None:
            await scheduler.keep_alive(entry, keep)
        reason = "load"
    if chat:
        message = OllamaOutMessage(role="assistant", content="")
        return OllamaChatAnswer(model=model, created_at=now(), message=message, done=True, done_reason=reason)
    return OllamaGenerateAnswer(model=model, created_at=now(), response="", done=True, done_reason=reason)


async def running(scheduler: Scheduler) -> OllamaRunningList:
    """``/api/ps``: the resident models, their footprint, and when they unload."""
    out = []
    for device in scheduler.snapshot()["devices"]:
        for r in device["resident"]:
            entry = scheduler.registry.entries.get(r["model"])
            if entry is None:
                continue
            w = await info.weights(entry)
            name = names_of(entry)[0]
            keep = None if r["pinned"] else r["keep_alive"]
            out.append(
                OllamaRunningModel(
                    name=name,
                    model=name,
                    size=r["footprint"],
                    digest=w.digest,
                    details=info.details(entry, w),
                    expires_at=info.expires_at(keep if keep is None or keep >= 0 else math.inf, r["last_used"]),
                    size_vram=r["footprint"] if device["kind"] not in ("cpu", "remote") else 0,
                    context_length=info.served_context(entry, w),
                )
            )
    return OllamaRunningList(models=out)
