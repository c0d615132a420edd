"""/v1/messages: Anthropic's Messages API, served by the same chat call as /v1/chat/completions.

``POST /v1/messages`` (the ``anthropic`` package's beta client adds ``?beta=true``) translates the
request into a chat request (:mod:`loom.daemon.anthropic.translate`), prepares it like any chat
request (rules, route, parameter policy, image URLs through the guarded fetcher), runs it, and
answers a message or Anthropic's event stream (:mod:`loom.daemon.anthropic.stream`).
``POST /v1/messages/count_tokens`` counts the prompt the model would evaluate, with its own
tokenizer and chat template (tools included): the request runs as a one-token generation and the
prompt's count is read back (the prompt cache keeps the evaluation for the request that follows).
Both answer errors in Anthropic's shape (:mod:`loom.daemon.anthropic.errors`). The key comes as
``x-api-key`` (what the package sends) or ``Authorization: Bearer``; ``anthropic-version`` and
``anthropic-beta`` are accepted and change nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from loom.sdk.anthropic import (
    AnthropicErrorResponse,
    CountTokensRequest,
    CreateMessageRequest,
    Message,
    MessageTokensCount,
    StreamEvent,
)
from loom.sdk.errors import InvalidRequest, LoomError

from ..anthropic.errors import EXCEPTION_HANDLERS
from ..anthropic.stream import MessageBuilder
from ..anthropic.translate import shown, to_chat
from ..chat.generations import Generations, chat_generations
from ..chat.param_policy import ignored_header
from ..http.body import BodyReader
from ..http.errors import validation_error
from ..text_services import TextServices
from .openapi import BODY_ERRORS, MODEL_ERRORS, Query, doc
from .respond import PROVENANCE, json_response, served_by

T = TypeVar("T")
_encode = msgspec.json.encode
_MISSING = re.compile(r"Object missing required field `(\w+)`(?: - at `\$\.?(.*)`)?")

#: What Anthropic's clients send besides the key; accepted, and change nothing.
HEADERS = (
    Query(
        "anthropic-version", {"type": "string"}, "Anthropic's API version (accepted; one version is served)", "header"
    ),
    Query(
        "anthropic-beta", {"type": "string"}, "Anthropic's beta features (accepted; none change the answer)", "header"
    ),
)
BETA = Query("beta", {"type": "string"}, "Sent by the anthropic package's beta client; changes nothing")
#: Errors of the Messages routes: a full queue is Anthropic's 529 (overloaded), not 429.
ERRORS = BODY_ERRORS + tuple(529 if s == 429 else s for s in MODEL_ERRORS)


async def _decode(bodies: BodyReader, request: Request, type_: type[T]) -> T:
    """The body decoded strictly; a missing field is named the way Anthropic names it."""
    body = await bodies.read(request)
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object", code="invalid_json")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.MsgspecError as e:
        missing = _MISSING.fullmatch(str(e))
        if missing is not None:
            field, where = missing.groups()
            param = f"{where}.{field}" if where else field
            raise InvalidRequest(f"{param}: Field required", param=param) from None
        raise validation_error(e) from None


@post(
    "/messages",
    status_code=200,
    exception_handlers=EXCEPTION_HANDLERS,
    operation_class=doc(
        "Create a message (Anthropic's Messages API)",
        body=CreateMessageRequest,
        returns=Message,
        events=StreamEvent,
        errors=ERRORS,
        error_shape=AnthropicErrorResponse,
        headers=PROVENANCE,
        query=(BETA, *HEADERS),
    ),
)
async def create_message(request: Request, text: NamedDependency[TextServices]) -> Response:
    req = await _decode(text.bodies, request, CreateMessageRequest)
    gens, ignored = await _generations(request, text, req)
    builder = MessageBuilder(req.model)

    if req.stream:
        entry = await gens.start()

        async def events() -> AsyncIterator[ServerSentEventMessage]:
            def sse(event: StreamEvent) -> ServerSentEventMessage:
                tag = type(event).__struct_config__.tag
                assert isinstance(tag, str), "a stream event is tagged with its type name"
                return ServerSentEventMessage(data=_encode(event).decode(), event=tag)

            for event in builder.start():
                yield sse(event)
            try:
                async for _, chunks in gens:
                    async for chunk in chunks:
                        for event in builder.chunk(chunk):
                            yield sse(event)
                for event in builder.finish():
                    yield sse(event)
            except LoomError as e:
                for event in builder.fail(e):
                    yield sse(event)

        return ServerSentEvent(
            events(), headers={**served_by(entry), **ignored_header(ignored + gens.ignored)}, status_code=200
        )

    entry, results = await gens.collect()
    for chunk in results[0][1]:
        builder.chunk(chunk)
    builder.finish()
    return json_response(builder.final, headers={**served_by(entry), **ignored_header(ignored + gens.ignored)})


@post(
    "/messages/count_tokens",
    status_code=200,
    exception_handlers=EXCEPTION_HANDLERS,
    operation_class=doc(
        "Count the tokens of a message request (Anthropic's Messages API)",
        body=CountTokensRequest,
        returns=MessageTokensCount,
        errors=ERRORS,
        error_shape=AnthropicErrorResponse,
        headers=PROVENANCE,
        query=(BETA, *HEADERS),
    ),
)
async def count_tokens(request: Request, text: NamedDependency[TextServices]) -> Response:
    req = await _decode(text.bodies, request, CountTokensRequest)
    gens, ignored = await _generations(request, text, req)
    entry, results = await gens.collect()
    tokens = sum(chunk.prompt_tokens or 0 for chunk in results[0][1])
    return json_response(
        MessageTokensCount(input_tokens=tokens), headers={**served_by(entry), **ignored_header(ignored + gens.ignored)}
    )


ROUTES = [create_message, count_tokens]


async def _generations(
    request: Request, text: TextServices, req: CreateMessageRequest | CountTokensRequest
) -> tuple[Generations, list[str]]:
    """A Messages request through the same intake as Chat Completions: its generations, and the
    parameters the translation left out (the policy's are the generations' own, known once a
    model serves; both go in ``x-loom-ignored``)."""
    translated = to_chat(req, text.intake.compat)
    own_host = request.url.netloc if translated.chat.has_images() else None
    prepared = await text.intake.prepare(
        translated.chat, own_host=own_host, shown=shown, image_param=translated.image_param
    )
    return chat_generations(text.router, text.scheduler, prepared), translated.ignored
