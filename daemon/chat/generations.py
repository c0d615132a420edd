"""The generations of one text request, run on the router's choice of model: streamed (the first
started eagerly, so errors before its first token keep their HTTP status) or each run to its end.
Chat Completions, Completions, the Responses API, the Messages API and Ollama's routes all run
through it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
from loom.sdk import calls
from loom.sdk.protocols import RunContext, TextChunk

from ..models import ModelEntry
from ..routing import ModelRouter
from ..scheduler import Priority, Scheduler
from ..service_tier import priority_of
from .intake import Prepared

#: The generations to run on one model: (choice index, its call) each.
Runs = list[tuple[int, calls.Call]]


class Generations:
    """Runs the generations of one request in order on the first model of ``chain`` that serves
    the first of them: streamed (:meth:`start`, then iterate; the first is started eagerly) or
    each run to its end (:meth:`collect`). ``runs`` makes the calls for the model about to be
    tried (for a chat request, fitted to its parameters); later choices stay on the model that
    served the first."""

    def __init__(
        self,
        router: ModelRouter,
        scheduler: Scheduler,
        chain: list[ModelEntry],
        runs: Callable[[ModelEntry], Runs],
        ignored: Callable[[ModelEntry], list[str]] = lambda _entry: [],
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> None:
        self.router, self.scheduler, self.chain = router, scheduler, chain
        #: The scheduling priority of its calls (a chat request's ``service_tier``; a batch's line
        #: runs at ``Priority.BATCH`` with its job's context, which cancels it).
        self.priority, self.ctx = priority, ctx
        self._runs_for, self._ignored_for = runs, ignored
        self._runs: dict[str, Runs] = {}
        self.entry: ModelEntry | None = None
        self._first: AsyncIterator[TextChunk] | None = None

    def _ctx(self) -> RunContext:
        return self.ctx if self.ctx is not None else RunContext()

    def runs(self, entry: ModelEntry) -> Runs:
        if entry.id not in self._runs:
            self._runs[entry.id] = self._runs_for(entry)
        return self._runs[entry.id]

    def _first_call(self, entry: ModelEntry) -> calls.Call:
        return self.runs(entry)[0][1]

    @property
    def ignored(self) -> list[str]:
        """Client-facing names of the parameters left out for the model that served."""
        assert self.entry is not None, "start() or collect() comes first"
        return self._ignored_for(self.entry)

    async def start(self) -> ModelEntry:
        self.entry, self._first = await self.router.stream_on(
            self.chain, self._first_call, priority=self.priority, ctx=self._ctx()
        )
        return self.entry

    async def collect(self) -> tuple[ModelEntry, list[tuple[int, list[TextChunk]]]]:
        """The model that served, and (choice index, its chunks) for every generation, each run to
        its end: for an answer that is not streamed, whose chunks need not cross to this task one
        at a time."""
        entry, chunks = await self.router.collect_on(
            self.chain, self._first_call, priority=self.priority, ctx=self._ctx()
        )
        self.entry = entry
        (index, _), *rest = self.runs(entry)
        out = [(index, chunks)]
        for index, call in rest:
            out.append((index, await self.scheduler.collect(entry, call, priority=self.priority, ctx=self._ctx())))
        return entry, out

    async def __aiter__(self) -> AsyncIterator[tuple[int, AsyncIterator[TextChunk]]]:
        """Yield (choice index, chunks) pairs."""
        assert self.entry is not None and self._first is not None, "start() comes first"
        for n, (index, call) in enumerate(self.runs(self.entry)):
            if n == 0:
                chunks = self._first
            else:
                chunks = self.scheduler.stream(self.entry, call, priority=self.priority, ctx=self._ctx())
            yield index, chunks


def with_seed(req, i: int):
    return msgspec.structs.replace(req, seed=None if req.seed is None else req.seed + i)


def chat_generations(
    router: ModelRouter,
    scheduler: Scheduler,
    prepared: Prepared,
    *,
    priority: Priority | None = None,
    ctx: RunContext | None = None,
) -> Generations:
    """One generation per choice (``n``, seed + index when seeded) of a prepared chat request,
    each model of its chain sent the request fitted to it; at ``priority`` (a batch line's), else
    the one its ``service_tier`` asks for."""

    def runs(entry: ModelEntry) -> Runs:
        req = prepared.fitted(entry)
        return [(i, calls.Chat(request=with_seed(req, i))) for i in range(req.n)]

    if priority is None:
        priority = priority_of(prepared.request.service_tier)
    return Generations(router, scheduler, prepared.chain, runs, prepared.ignored, priority, ctx)
