"""A batch's requests run through the code of their endpoints' routes, less HTTP.

:class:`BatchLines` is the :class:`~loom.daemon.batches.work.LineRunner` the batch job is given:
each line's body is decoded strictly as its route decodes it, prepared as the route prepares it
(a chat request goes through the same intake: rules, route, parameter policy, image URLs) and run
by the same function the route's non-streamed answer comes from, at the scheduler's ``BATCH``
priority and with the job's RunContext (so cancelling the batch stops it). What the route would
answer as an error is raised, and its status comes from the same table (:func:`.errors.status_of`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from loom.sdk.errors import LoomError
from loom.sdk.protocols import RunContext
from loom.sdk.responses import CreateResponseRequest
from loom.sdk.types import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ImageGenerationRequest

from ..files import FileStore
from ..http.errors import status_of, validation_error
from ..models import ModelRegistry
from ..principals import Principal, owner_folder
from ..responses import ResponseStore
from ..scheduler import Priority
from ..storage.service import Storage
from ..text_services import TextServices
from . import chat, embeddings, images, responses

T = TypeVar("T")


def _decode(body: bytes, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.MsgspecError as e:
        raise validation_error(e) from None


class BatchLines:
    def __init__(
        self,
        text: TextServices,
        registry: ModelRegistry,
        files: FileStore,
        storage: Storage,
        responses: ResponseStore,
    ) -> None:
        self.text = text
        self.registry = registry
        self.files = files
        self.storage = storage
        self.responses = responses
        self._endpoints: dict[str, Callable[[bytes, RunContext, str], Awaitable[Any]]] = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completion,
            "/v1/embeddings": self._embeddings,
            "/v1/responses": self._response,
            "/v1/images/generations": self._images,
        }

    async def run(self, endpoint: str, body: bytes, ctx: RunContext, owner: str) -> dict[str, Any]:
        answer = await self._endpoints[endpoint](body, ctx, owner)
        return msgspec.to_builtins(answer)

    def status_of(self, error: LoomError) -> int:
        return status_of(error)

    async def _chat(self, body: bytes, ctx: RunContext, owner: str):
        prepared = await self.text.intake.prepare(_decode(body, ChatCompletionRequest), own_host=None)
        _, answer, _ = await chat.complete_chat(self.text, prepared, priority=Priority.BATCH, ctx=ctx)
        return answer

    async def _completion(self, body: bytes, ctx: RunContext, owner: str):
        _, answer, _ = await chat.complete_text(
            self.text, _decode(body, CompletionRequest), priority=Priority.BATCH, ctx=ctx
        )
        return answer

    async def _embeddings(self, body: bytes, ctx: RunContext, owner: str):
        req = _decode(body, EmbeddingRequest)
        _, answer = await embeddings.embed(self.text.router, req, priority=Priority.BATCH, ctx=ctx)
        return answer

    async def _response(self, body: bytes, ctx: RunContext, owner: str):
        req = _decode(body, CreateResponseRequest)
        run = await responses.start(
            req,
            self.text.intake,
            self.text.router,
            self.text.scheduler,
            self.responses,
            own_host=None,
            owner=Principal(name=owner, role="user"),  # continues and stores the batch owner's own
            priority=Priority.BATCH,
            ctx=ctx,
        )
        return await run.final()

    async def _images(self, body: bytes, ctx: RunContext, owner: str):
        req = _decode(body, ImageGenerationRequest)
        folder = owner_folder("images", owner)  # the batch owner's, as the route writes the caller's
        _, answer = await images.generate(
            req, self.registry, self.text.router, self.files, self.storage, "", folder, priority=Priority.BATCH, ctx=ctx
        )
        return answer
