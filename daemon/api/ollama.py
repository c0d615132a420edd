"""Ollama's API under ``/api``: what Open WebUI's Ollama connection, VS Code's Ollama provider,
n8n's Ollama node and the ollama-python/ollama-js libraries speak, served from the same models,
queues and scheduler as ``/v1``.

Chat and generate are translated (:mod:`loom.daemon.ollama.translate`) into the chat and
completion calls Chat Completions makes and run through the same intake and generations; their
answers stream as NDJSON unless ``stream`` is false. Errors are Ollama's ``{"error": "..."}`` with
Loom's statuses (404 for a model it does not know, 400 for a bad request), except a full queue,
which is Ollama's 503. The routes sit behind the same key guard as ``/v1``.
"""

from __future__ import annotations

import msgspec
import numpy as np
from litestar import MediaType, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.response import Stream
from litestar.types import ExceptionHandlersMap
from loom.sdk import calls
from loom.sdk import errors as E
from loom.sdk.types import Capability

from ..catalog.live import ModelCatalog
from ..chat.generations import Generations, chat_generations
from ..http.errors import log, status_of, validation_error
from ..models import ModelEntry, ModelRegistry
from ..ollama import aliases, info, translate
from ..ollama.answer import Answer, Clock
from ..ollama.names import entry_for, loom_name, names_of
from ..ollama.options import chat_options, keep_alive
from ..ollama.pull import Puller
from ..ollama.running import Run, load_or_unload, running
from ..ollama.wire import (
    OllamaChatAnswer,
    OllamaChatRequest,
    OllamaCopyRequest,
    OllamaEmbedAnswer,
    OllamaEmbeddingAnswer,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaError,
    OllamaGenerateAnswer,
    OllamaGenerateRequest,
    OllamaListedModel,
    OllamaModelList,
    OllamaModelRef,
    OllamaProgress,
    OllamaPullRequest,
    OllamaRunningList,
    OllamaShown,
    OllamaVersion,
)
from ..routing import ModelRouter
from ..scheduler import Scheduler
from ..text_services import TextServices
from .openapi import doc
from .respond import PROVENANCE, json_response, served_by

#: The Ollama API version Loom answers as (the release whose API it follows).
OLLAMA_VERSION = "0.14.0"
NDJSON = "application/x-ndjson"
#: Errors of a route that runs a model: a bad request, no such model, too big, cancelled, the
#: provider failed, busy or unavailable, a remote one timed out.
MODEL_ERRORS = (400, 404, 413, 499, 502, 503, 504)


def odoc(summary: str, **kw):
    """``doc`` for an Ollama route: its errors are Ollama's ``{"error": ...}``."""
    return doc(summary, error_shape=OllamaError, **kw)


def message_of(error: E.LoomError) -> str:
    """Ollama's error is one string: a bad request's field goes into it when it does not say it."""
    if isinstance(error, E.InvalidRequest) and error.param and error.param not in error.message:
        return f"{error.message} ({error.param})"
    return error.message


def error_response(error: E.LoomError) -> Response:
    # A full queue is Ollama's 503 (busy); the caller's own quota is a 429.
    busy = isinstance(error, E.QueueFull) and not isinstance(error, E.QuotaExceeded)
    status = 503 if busy else status_of(error)
    headers = {"Retry-After": str(max(1, round(error.retry_after)))} if isinstance(error, E.QueueFull) else {}
    return Response(
        content=msgspec.json.encode(OllamaError(message_of(error))),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _handle_loom(request: Request, exc: E.LoomError) -> Response:
    if status_of(exc) >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, type(exc).__name__, exc.message)
    return error_response(exc)


def _handle_msgspec(request: Request, exc: msgspec.MsgspecError) -> Response:
    return error_response(validation_error(exc))


def _handle_http(request: Request, exc: HTTPException) -> Response:
    response = Response(
        content=msgspec.json.encode(OllamaError(str(exc.detail))),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
    )
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(E.LoomError(f"Internal error: {type(exc).__name__}: {exc}"))


def exception_handlers() -> ExceptionHandlersMap:
    """The ``/api`` Routers' handlers: every error in Ollama's shape."""
    return {
        E.LoomError: _handle_loom,
        msgspec.MsgspecError: _handle_msgspec,
        HTTPException: _handle_http,
        Exception: _handle_unexpected,
    }


#: What a model chats or generates with.
TEXT = {Capability.CHAT, Capability.COMPLETION}


def _able(entry: ModelEntry, name: str, capabilities: set[Capability], what: str) -> None:
    """Refuse to load or unload, for a request, a model that cannot serve it."""
    if not entry.capabilities & capabilities:
        raise E.CapabilityNotSupported(f"model '{name}' does not support {what}", param="model")


def _answer(line, stream: bool, headers: dict[str, str]) -> Response:
    if stream:
        return Response(content=msgspec.json.encode(line) + b"\n", media_type=NDJSON, headers=headers)
    return json_response(line, headers=headers)


@get("/version", operation_class=odoc("Ollama: the API version", returns=OllamaVersion))
async def version() -> Response:
    return json_response(OllamaVersion(OLLAMA_VERSION))


@get("/tags", operation_class=odoc("Ollama: the models", returns=OllamaModelList))
async def tags(registry: NamedDependency[ModelRegistry]) -> Response:
    text = {Capability.CHAT, Capability.COMPLETION, Capability.EMBEDDING}
    models = []
    for entry in registry:
        if not entry.capabilities & text:
            continue
        w = await info.weights(entry)
        details = info.details(entry, w)
        for name in names_of(entry):
            models.append(OllamaListedModel(name, name, info.modified(w), w.size, w.digest, details))
    return json_response(OllamaModelList(models))


@post(
    "/show",
    status_code=200,
    operation_class=odoc("Ollama: one model", body=OllamaModelRef, returns=OllamaShown, errors=(400, 404, 413)),
)
async def show(
    request: Request, text: NamedDependency[TextServices], registry: NamedDependency[ModelRegistry]
) -> Response:
    req = await text.bodies.decode(request, OllamaModelRef)
    entry = entry_for(registry, req.model)
    w = await info.weights(entry)
    shown = OllamaShown(
        modelfile=info.modelfile(entry, w),
        parameters=info.parameters(entry, w),
        template=info.template(w),
        details=info.details(entry, w),
        model_info=info.model_info(entry, w, bool(req.verbose)),
        capabilities=info.capabilities(entry, w),
        modified_at=info.modified(w),
        license=w.facts.meta.get("general.license", "") if w.facts is not None else "",
    )
    return json_response(shown)


@get("/ps", operation_class=odoc("Ollama: the loaded models", returns=OllamaRunningList))
async def ps(scheduler: NamedDependency[Scheduler]) -> Response:
    return json_response(await running(scheduler))


@post(
    "/chat",
    status_code=200,
    operation_class=odoc(
        "Ollama: chat",
        body=OllamaChatRequest,
        returns=OllamaChatAnswer,
        lines=OllamaChatAnswer,
        errors=MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def chat(request: Request, text: NamedDependency[TextServices]) -> Response:
    clock = Clock()
    req = await text.bodies.decode(request, OllamaChatRequest)
    registry = text.intake.registry
    name = loom_name(registry, req.model)
    entry = registry.get(name)
    keep = keep_alive(req.keep_alive)
    if not req.messages:
        translate.common(req, name, info.served_context(entry))  # checked all the same
        _able(entry, name, TEXT, "chat")
        return _answer(await load_or_unload(text.scheduler, entry, req.model, keep, chat=True), req.stream, {})
    chat_req = translate.chat(req, name, info.served_context(entry))
    prepared = await text.intake.prepare(chat_req, own_host=None, shown=translate.shown)
    gens = chat_generations(text.router, text.scheduler, prepared)
    return await _respond(Run(text.scheduler, entry, keep, clock), gens, Answer(req.model, True, clock), req.stream)


async def _respond(run: Run, gens: Generations, answer: Answer, stream: bool) -> Response:
    try:
        served = await run.start(gens)
    except BaseException:
        await run.settle()
        raise
    headers = served_by(served)
    if stream:
        return Stream(run.ndjson(gens, answer), media_type=NDJSON, headers=headers, status_code=200)
    return json_response(await run.whole(gens, answer), headers=headers)


@post(
    "/generate",
    status_code=200,
    operation_class=odoc(
        "Ollama: generate",
        body=OllamaGenerateRequest,
        returns=OllamaGenerateAnswer,
        lines=OllamaGenerateAnswer,
        errors=MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def generate(request: Request, text: NamedDependency[TextServices]) -> Response:
    clock = Clock()
    req = await text.bodies.decode(request, OllamaGenerateRequest)
    registry = text.intake.registry
    name = loom_name(registry, req.model)
    entry = registry.get(name)
    keep = keep_alive(req.keep_alive)
    context = info.served_context(entry)
    if not req.prompt and req.suffix is None and not req.images:
        translate.refuse_generate_only(req)
        translate.common(req, name, context)  # checked all the same
        _able(entry, name, TEXT, "generate")
        return _answer(await load_or_unload(text.scheduler, entry, req.model, keep, chat=False), req.stream, {})
    answer = Answer(req.model, False, clock)
    run = Run(text.scheduler, entry, keep, clock)
    if req.raw or req.suffix is not None or Capability.CHAT not in entry.capabilities:
        fim = None
        if req.suffix is not None:
            w = await info.weights(entry)
            fim = w.facts.fim if w.facts is not None else None
        prompt, completion = translate.completion(req, name, context, fim)
        call = calls.Complete(prompt=prompt, request=completion)
        chain = text.router.candidates(name, Capability.COMPLETION)
        gens = Generations(text.router, text.scheduler, chain, lambda _entry: [(0, call)])
        return await _respond(run, gens, answer, req.stream)
    chat_req = translate.generate_chat(req, name, context)
    prepared = await text.intake.prepare(chat_req, own_host=None, shown=translate.shown)
    gens = chat_generations(text.router, text.scheduler, prepared)
    return await _respond(run, gens, answer, req.stream)


@post(
    "/embed",
    status_code=200,
    operation_class=odoc(
        "Ollama: embed", body=OllamaEmbedRequest, returns=OllamaEmbedAnswer, errors=MODEL_ERRORS, headers=PROVENANCE
    ),
)
async def embed(
    request: Request, text: NamedDependency[TextServices], router: NamedDependency[ModelRouter]
) -> Response:
    clock = Clock()
    req = await text.bodies.decode(request, OllamaEmbedRequest)
    inputs = [req.input] if isinstance(req.input, str) else list(req.input)
    vectors, prompt_tokens, served = await _embed(text, router, req.model, inputs, req.options, req.keep_alive, clock)
    if req.dimensions is not None:
        vectors = _truncate(vectors, req.dimensions)
    clock.tick()
    stats = clock.stats(prompt_tokens, 0, 0)
    answer = OllamaEmbedAnswer(
        model=req.model,
        embeddings=vectors,
        total_duration=stats["total_duration"],
        load_duration=stats["load_duration"],
        prompt_eval_count=prompt_tokens,
    )
    return json_response(answer, headers=served_by(served) if served is not None else {})


@post(
    "/embeddings",
    status_code=200,
    operation_class=odoc(
        "Ollama: embed one prompt (the older route)",
        body=OllamaEmbeddingsRequest,
        returns=OllamaEmbeddingAnswer,
        errors=MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def embeddings(
    request: Request, text: NamedDependency[TextServices], router: NamedDependency[ModelRouter]
) -> Response:
    req = await text.bodies.decode(request, OllamaEmbeddingsRequest)
    inputs = [req.prompt] if req.prompt else []
    vectors, _, served = await _embed(text, router, req.model, inputs, req.options, req.keep_alive, Clock())
    answer = OllamaEmbeddingAnswer(embedding=vectors[0] if vectors else [])
    return json_response(answer, headers=served_by(served) if served is not None else {})


async def _embed(text: TextServices, router: ModelRouter, model: str, inputs: list[str], options, keep, clock: Clock):
    """(vectors, prompt tokens, the entry that served or None when there was nothing to embed)."""
    registry = text.intake.registry
    name = loom_name(registry, model)
    entry = registry.get(name)
    seconds = keep_alive(keep)
    if options:
        sampling = chat_options(options, info.served_context(entry))
        if sampling:
            first = next(iter(options))
            raise E.UnsupportedParameter(f"options.{first} does not apply to embeddings", param=f"options.{first}")
    if not inputs:
        _able(entry, name, {Capability.EMBEDDING}, "embeddings")
        await load_or_unload(text.scheduler, entry, model, seconds, chat=False)
        return [], 0, None
    resident = text.scheduler.is_loaded(entry)
    clock.call()
    served, result = await router.run(name, Capability.EMBEDDING, calls.Embed(inputs=inputs))
    clock.started(None if resident else text.scheduler.model_state(served).get("load_seconds"))
    if seconds is not None:
        await text.scheduler.keep_alive(served, seconds)
    if len(result.vectors) != len(inputs):
        raise E.ProviderError(f"{served.id} returned {len(result.vectors)} vectors for {len(inputs)} inputs")
    return [list(map(float, v)) for v in result.vectors], result.prompt_tokens, served


def _truncate(vectors: list[list[float]], dimensions: int) -> list[list[float]]:
    """The first ``dimensions`` of each vector, made unit length again (Ollama's ``dimensions``)."""
    if not vectors:
        return vectors
    if not 1 <= dimensions <= len(vectors[0]):
        raise E.InvalidRequest(
            f"dimensions must be from 1 to the model's {len(vectors[0])}, got {dimensions}", param="dimensions"
        )
    array = np.asarray(vectors, dtype=np.float64)[:, :dimensions]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.where(norms == 0, 1, norms)).tolist()


@post(
    "/pull",
    status_code=200,
    operation_class=odoc(
        "Ollama: pull a model from the Hugging Face hub",
        body=OllamaPullRequest,
        returns=OllamaProgress,
        lines=OllamaProgress,
        errors=(400, 403, 413, 503),
    ),
)
async def pull(
    request: Request,
    text: NamedDependency[TextServices],
    catalog: NamedDependency[ModelCatalog],
) -> Response:
    req = await text.bodies.decode(request, OllamaPullRequest)
    if req.insecure:
        raise E.UnsupportedParameter(
            "insecure is not supported: Loom pulls from the Hugging Face hub over HTTPS only", param="insecure"
        )
    puller = Puller(catalog, req.model)
    if req.stream:
        return Stream(puller.ndjson(), media_type=NDJSON, status_code=200)
    last = None
    async for progress in puller.run():
        last = progress
    return json_response(last)


@delete(
    "/delete",
    status_code=200,
    operation_class=odoc(
        "Ollama: delete a model or one of its names", body=OllamaModelRef, errors=(400, 403, 404, 413)
    ),
)
async def delete_model(
    request: Request, text: NamedDependency[TextServices], catalog: NamedDependency[ModelCatalog]
) -> Response:
    req = await text.bodies.decode(request, OllamaModelRef)
    name = loom_name(catalog.registry, req.model)
    await aliases.delete(catalog, name)
    return Response(content=b"", status_code=200)


@post(
    "/copy",
    status_code=200,
    operation_class=odoc(
        "Ollama: copy a model (a new name for it)", body=OllamaCopyRequest, errors=(400, 403, 404, 413)
    ),
)
async def copy(
    request: Request, text: NamedDependency[TextServices], catalog: NamedDependency[ModelCatalog]
) -> Response:
    req = await text.bodies.decode(request, OllamaCopyRequest)
    name = loom_name(catalog.registry, req.source)
    await aliases.copy(catalog, name, req.destination)
    return Response(content=b"", status_code=200)


#: Under ``/api`` with any key, as ``/v1``.
ROUTES = [version, tags, show, ps, chat, generate, embed, embeddings]
#: Under ``/api`` with an admin key (they change the config's models, as ``/admin/models`` does).
ADMIN_ROUTES = [pull, delete_model, copy]
