"""/v1/chat/completions and /v1/completions: streamed and plain, ``n`` choices for real.

Each choice is one generation (seed + index when a seed is given). A stream is started before the
response goes out, so errors raised before the first token (unknown model, full queue, a provider
failing at load) keep their HTTP status; errors after it arrive as an ``error`` event. Before any
of that, a chat request goes through the :class:`loom.daemon.chat.intake.ChatIntake` (rules, route,
parameter policy, image URLs).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent
from loom.sdk import calls
from loom.sdk.errors import LoomError
from loom.sdk.protocols import RunContext, TextChunk
from loom.sdk.types import (
    Capability,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    ChunkFunction,
    ChunkToolCall,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Usage,
)

from ..chat.assemble import ChoiceBuilder, count
from ..chat.generations import Generations, chat_generations, with_seed
from ..chat.intake import Prepared
from ..chat.param_policy import apply_policy, ignored_header
from ..chat.rules import check_completion
from ..http.errors import error_body
from ..models import ModelEntry
from ..scheduler import Priority
from ..service_tier import tier_used
from ..text_services import TextServices
from .openapi import BODY_ERRORS, MODEL_ERRORS, doc
from .respond import PROVENANCE, json_response, served_by

_encode = msgspec.json.encode


@post(
    "/chat/completions",
    status_code=200,
    operation_class=doc(
        "Create a chat completion",
        body=ChatCompletionRequest,
        returns=ChatCompletion,
        events=ChatCompletionChunk,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def chat_completions(request: Request, text: NamedDependency[TextServices]) -> Response:
    req = await text.bodies.decode(request, ChatCompletionRequest)
    # The Host is only needed to read image URLs of this daemon's own files; parsing the URL
    # costs more than the rest of a small request's routing.
    own_host = request.url.netloc if req.has_images() else None
    prepared = await text.intake.prepare(req, own_host=own_host)
    req = prepared.request

    if req.stream:
        gens = chat_generations(text.router, text.scheduler, prepared)
        rid, created = f"chatcmpl-{random.getrandbits(96):024x}", int(time.time())
        entry = await gens.start()
        headers = {**served_by(entry), **ignored_header(gens.ignored)}
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        # `model` names the model that served, as OpenAI's answers do (not the alias asked for).
        events = _chat_events(gens, entry.id, rid, created, include_usage, tier_used(req.service_tier))
        return ServerSentEvent(events, headers=headers, status_code=200)

    entry, answer, ignored = await complete_chat(text, prepared)
    return json_response(answer, headers={**served_by(entry), **ignored_header(ignored)})


async def complete_chat(
    text: TextServices, prepared: Prepared, *, priority: Priority | None = None, ctx: RunContext | None = None
) -> tuple[ModelEntry, ChatCompletion, list[str]]:
    """A prepared chat request's answer, not streamed: every choice run to its end (the route's
    answer, and a batch line's), with the parameters left out for the model that served."""
    req = prepared.request
    gens = chat_generations(text.router, text.scheduler, prepared, priority=priority, ctx=ctx)
    choices, usage = [], Usage()
    entry, results = await gens.collect()
    for index, chunks in results:
        builder = ChoiceBuilder()
        for chunk in chunks:
            builder.add(chunk)
            count(usage, chunk, prompt=index == 0)
        choices.append(builder.choice(index))
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    rid, created = f"chatcmpl-{random.getrandbits(96):024x}", int(time.time())
    answer = ChatCompletion(
        id=rid, created=created, model=entry.id, choices=choices, usage=usage, service_tier=tier_used(req.service_tier)
    )
    return entry, answer, gens.ignored


def chunk_delta(c: TextChunk) -> ChunkDelta | None:
    """A provider chunk as an OpenAI delta (None when it carries neither text nor calls)."""
    calls_ = [
        ChunkToolCall(
            index=d.index,
            id=d.id,
            type="function" if d.id else None,
            function=ChunkFunction(name=d.name, arguments=d.arguments if d.arguments or d.id else None),
        )
        for d in c.tool_calls or ()
    ]
    if not c.text and not calls_ and c.logprobs is None:
        return None
    return ChunkDelta(content=c.text if c.text or c.logprobs is not None else None, tool_calls=calls_ or None)


async def _chat_events(gens: Generations, model, rid, created, include_usage, tier) -> AsyncIterator[bytes]:
    def chunk(choices, usage=None) -> bytes:
        return _encode(
            ChatCompletionChunk(id=rid, created=created, model=model, choices=choices, usage=usage, service_tier=tier)
        )

    usage = Usage()
    try:
        async for index, chunks in gens:
            yield chunk([ChunkChoice(index, ChunkDelta(role="assistant", content=""))])
            builder = ChoiceBuilder()
            async for c in chunks:
                builder.add(c)
                delta = chunk_delta(c)
                if delta is not None:
                    logprobs = ChoiceLogprobs(content=c.logprobs) if c.logprobs is not None else None
                    yield chunk([ChunkChoice(index, delta, logprobs=logprobs)])
                count(usage, c, prompt=index == 0)
            yield chunk([ChunkChoice(index, ChunkDelta(), finish_reason=builder.finish_reason())])
        if include_usage:
            usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
            yield chunk([], usage)
    except LoomError as e:
        yield error_body(e)
    yield b"[DONE]"


@post(
    "/completions",
    status_code=200,
    operation_class=doc(
        "Create a completion",
        body=CompletionRequest,
        returns=Completion,
        events=Completion,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def completions(request: Request, text: NamedDependency[TextServices]) -> Response:
    req = await text.bodies.decode(request, CompletionRequest)
    if not req.stream:
        entry, answer, ignored = await complete_text(text, req)
        return json_response(answer, headers={**served_by(entry), **ignored_header(ignored)})
    prompts = req.prompts()
    gens = completion_generations(text, req)
    rid, created = f"cmpl-{random.getrandbits(96):024x}", int(time.time())

    def prompt_of(index: int) -> str:
        return prompts[index // req.n]

    entry = await gens.start()
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def events():
        usage = Usage()
        try:
            async for index, chunks in gens:
                if req.echo:
                    yield _piece(rid, created, entry.id, index, prompt_of(index), None)
                async for c in chunks:
                    count(usage, c, prompt=index % req.n == 0)
                    if c.text or c.finish_reason:
                        yield _piece(rid, created, entry.id, index, c.text, c.finish_reason)
            if include_usage:
                usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
                yield _encode(Completion(id=rid, created=created, model=entry.id, choices=[], usage=usage))
        except LoomError as e:
            yield error_body(e)
        yield b"[DONE]"

    return ServerSentEvent(events(), headers={**served_by(entry), **ignored_header(gens.ignored)}, status_code=200)


def completion_generations(
    text: TextServices,
    req: CompletionRequest,
    *,
    priority: Priority = Priority.INTERACTIVE,
    ctx: RunContext | None = None,
) -> Generations:
    """One generation per prompt and choice, indexed as OpenAI numbers the choices; the request's
    rules checked, and each candidate model sent the request fitted to its parameter policy."""
    check_completion(req)
    prompts = req.prompts()
    chain = text.router.candidates(req.model, Capability.COMPLETION)
    fitted: dict[str, tuple[CompletionRequest, list[str]]] = {}

    def fit(entry: ModelEntry) -> tuple[CompletionRequest, list[str]]:
        # min_tokens and ignore_eos are the only optional parameters a completion takes: each
        # candidate's own provider's parameter policy, as chat applies it (refused by name, or
        # left out when lenient).
        if entry.id not in fitted:
            asked = req.min_tokens or req.ignore_eos
            fitted[entry.id] = apply_policy(req, entry, text.intake.compat) if asked else (req, [])
        return fitted[entry.id]

    def runs(entry: ModelEntry) -> list[tuple[int, calls.Call]]:
        sent = fit(entry)[0]
        return [
            (p * req.n + i, calls.Complete(prompt=prompt, request=with_seed(sent, i)))
            for p, prompt in enumerate(prompts)
            for i in range(req.n)
        ]

    return Generations(
        text.router, text.scheduler, chain, runs, lambda entry: fit(entry)[1], priority=priority, ctx=ctx
    )


async def complete_text(
    text: TextServices,
    req: CompletionRequest,
    *,
    priority: Priority = Priority.INTERACTIVE,
    ctx: RunContext | None = None,
) -> tuple[ModelEntry, Completion, list[str]]:
    """A completion request's answer, not streamed (the route's, and a batch line's), with the
    parameters left out for the model that served."""
    prompts = req.prompts()
    gens = completion_generations(text, req, priority=priority, ctx=ctx)
    choices, usage = [], Usage()
    entry, results = await gens.collect()
    for index, chunks in results:
        pieces, finish = [prompts[index // req.n]] if req.echo else [], None
        for c in chunks:
            pieces.append(c.text)
            finish = c.finish_reason or finish
            count(usage, c, prompt=index % req.n == 0)
        choices.append(CompletionChoice(index, "".join(pieces), finish or "stop"))
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    rid, created = f"cmpl-{random.getrandbits(96):024x}", int(time.time())
    answer = Completion(id=rid, created=created, model=entry.id, choices=choices, usage=usage)
    return entry, answer, gens.ignored


def _piece(rid, created, model, index, text, finish) -> bytes:
    """One streamed completion chunk; ``usage`` is left out (it comes in its own last chunk with
    ``include_usage``), as OpenAI does."""
    chunk = Completion(id=rid, created=created, model=model, choices=[CompletionChoice(index, text, finish)])
    body = msgspec.to_builtins(chunk)
    del body["usage"]
    return _encode(body)
