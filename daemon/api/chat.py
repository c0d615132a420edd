"""/v1/chat/completions and /v1/completions: streamed and plain, ``n`` choices for real.

Each choice is one generation (seed + index when a seed is given). A stream is started before the
response goes out, so errors raised before the first token (unknown model, full queue, a provider
failing at load) keep their HTTP status; errors after it arrive as an ``error`` event.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent

from loom.sdk import calls
from loom.sdk.errors import CapabilityNotSupported, LoomError
from loom.sdk.protocols import RunContext, TextChunk
from loom.sdk.types import (
    AssistantMessage,
    Capability,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Usage,
)

from ..config import Routes
from ..models import ModelEntry, ModelRegistry
from ..routing import ModelRouter
from ..scheduler import Scheduler
from .body import BodyReader
from .errors import error_body
from .openapi import body
from .respond import json_response, served_by

_encode = msgspec.json.encode
Route = tuple[str, Capability]


def chat_route(registry: ModelRegistry, router: ModelRouter, routes: Routes, req: ChatCompletionRequest) -> Route:
    """The model name and capability to route by; image parts go to a vision-capable chat model."""
    entry = registry.for_capability(req.model, Capability.CHAT) if not req.has_images() else None
    if entry is not None:
        return req.model, Capability.CHAT
    entry = registry.get(req.model)
    if {Capability.VISION, Capability.CHAT} <= entry.capabilities:
        return req.model, Capability.VISION
    route = router.route_for(Capability.VISION, routes.vision)
    if route is not None and {Capability.VISION, Capability.CHAT} <= registry.get(route).capabilities:
        return route, Capability.VISION
    raise CapabilityNotSupported(
        f"The model '{req.model}' cannot read images and no vision chat model is routed",
        param="messages",
    )


class Generations:
    """Runs the generations of one request in order; the first is started eagerly."""

    def __init__(
        self, router: ModelRouter, scheduler: Scheduler, route: Route, runs: list[tuple[int, calls.Call]]
    ) -> None:
        self.router, self.scheduler, self.route, self.runs = router, scheduler, route, runs
        self.entry: ModelEntry | None = None
        self._first: AsyncIterator[TextChunk] | None = None

    async def start(self) -> ModelEntry:
        self.entry, self._first = await self.router.stream(*self.route, self.runs[0][1], ctx=RunContext())
        return self.entry

    async def __aiter__(self):
        """Yield (choice index, chunks) pairs."""
        for n, (index, call) in enumerate(self.runs):
            if n == 0:
                chunks = self._first
            else:
                # Later choices stay on the model that served the first.
                chunks = self.scheduler.stream(self.entry, call, ctx=RunContext())
            yield index, chunks


def _count(usage: Usage, chunk: TextChunk, prompt: bool) -> None:
    if chunk.prompt_tokens is not None and prompt:
        usage.prompt_tokens += chunk.prompt_tokens
    if chunk.completion_tokens is not None:
        usage.completion_tokens += chunk.completion_tokens


def _with_seed(req, i: int):
    return msgspec.structs.replace(req, seed=None if req.seed is None else req.seed + i)


@post("/chat/completions", operation_class=body(ChatCompletionRequest))
async def chat_completions(
    request: Request,
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    scheduler: NamedDependency[Scheduler],
    routes: NamedDependency[Routes],
) -> Response:
    req = await bodies.decode(request, ChatCompletionRequest)
    route = chat_route(registry, router, routes, req)

    def call(i: int):
        r = _with_seed(req, i)
        return calls.Chat(request=r)

    gens = Generations(router, scheduler, route, [(i, call(i)) for i in range(req.n)])
    entry = await gens.start()
    rid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = _chat_events(gens, req.model, rid, created, include_usage)
        return ServerSentEvent(events, headers=served_by(entry), status_code=200)

    choices, usage = [], Usage()
    async for index, chunks in gens:
        text, finish = [], None
        async for chunk in chunks:
            text.append(chunk.text)
            finish = chunk.finish_reason or finish
            _count(usage, chunk, prompt=index == 0)
        choices.append(ChatChoice(index, AssistantMessage(content="".join(text)), finish or "stop"))
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    body = ChatCompletion(id=rid, created=created, model=req.model, choices=choices, usage=usage)
    return json_response(body, headers=served_by(entry))


async def _chat_events(gens: Generations, model, rid, created, include_usage) -> AsyncIterator[bytes]:
    def chunk(choices, usage=None) -> bytes:
        return _encode(ChatCompletionChunk(id=rid, created=created, model=model, choices=choices, usage=usage))

    usage = Usage()
    try:
        async for index, chunks in gens:
            yield chunk([ChunkChoice(index, ChunkDelta(role="assistant", content=""))])
            finish = None
            async for c in chunks:
                if c.text:
                    yield chunk([ChunkChoice(index, ChunkDelta(content=c.text))])
                finish = c.finish_reason or finish
                _count(usage, c, prompt=index == 0)
            yield chunk([ChunkChoice(index, ChunkDelta(), finish_reason=finish or "stop")])
        if include_usage:
            usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
            yield chunk([], usage)
    except LoomError as e:
        yield error_body(e)
    yield b"[DONE]"


@post("/completions", operation_class=body(CompletionRequest))
async def completions(
    request: Request,
    bodies: NamedDependency[BodyReader],
    router: NamedDependency[ModelRouter],
    scheduler: NamedDependency[Scheduler],
) -> Response:
    req = await bodies.decode(request, CompletionRequest)
    prompts = req.prompts()

    def call(prompt: str, i: int):
        r = _with_seed(req, i)
        return calls.Complete(prompt=prompt, request=r)

    runs = [(p * req.n + i, call(prompt, i)) for p, prompt in enumerate(prompts) for i in range(req.n)]
    gens = Generations(router, scheduler, (req.model, Capability.COMPLETION), runs)
    entry = await gens.start()
    rid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

    def prompt_of(index: int) -> str:
        return prompts[index // req.n]

    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def events():
            usage = Usage()
            try:
                async for index, chunks in gens:
                    if req.echo:
                        yield _encode(_piece(rid, created, req.model, index, prompt_of(index), None))
                    async for c in chunks:
                        _count(usage, c, prompt=index % req.n == 0)
                        if c.text or c.finish_reason:
                            yield _encode(_piece(rid, created, req.model, index, c.text, c.finish_reason))
                if include_usage:
                    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
                    yield _encode(Completion(id=rid, created=created, model=req.model, choices=[], usage=usage))
            except LoomError as e:
                yield error_body(e)
            yield b"[DONE]"

        return ServerSentEvent(events(), headers=served_by(entry), status_code=200)

    choices, usage = [], Usage()
    async for index, chunks in gens:
        text, finish = [prompt_of(index)] if req.echo else [], None
        async for c in chunks:
            text.append(c.text)
            finish = c.finish_reason or finish
            _count(usage, c, prompt=index % req.n == 0)
        choices.append(CompletionChoice(index, "".join(text), finish or "stop"))
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    body = Completion(id=rid, created=created, model=req.model, choices=choices, usage=usage)
    return json_response(body, headers=served_by(entry))


def _piece(rid, created, model, index, text, finish) -> Completion:
    return Completion(id=rid, created=created, model=model, choices=[CompletionChoice(index, text, finish)])
