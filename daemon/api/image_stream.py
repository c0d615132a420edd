"""Streamed image answers: ``stream: true`` on ``/v1/images/generations`` and ``/v1/images/edits``.

The image is made as without ``stream`` (one ``GenerateImages`` call through the router), with
``ImageJob.partial_images`` set and a ``RunContext`` whose previews (``RunContext.preview``, from
the provider, in this process or across a worker's socket) are queued here. The answer waits
for the first preview or for the image itself before it starts, so a request that fails before
either (an unknown model, a full queue, a provider error) keeps its status and OpenAI's error
body; after that an error is one more event, ``event: error`` with the error body as its data
(which the ``openai`` package raises as ``APIError``).

Each preview becomes a ``*.partial_image`` event (numbered 0, 1, ... as they come, at most
``partial_images`` of them), the image a ``*.completed`` one (``loom.sdk.image_events``). A
client that leaves cancels the call.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import msgspec
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from loom.sdk import calls
from loom.sdk.errors import InvalidRequest, LoomError, ProviderError
from loom.sdk.image_events import EDIT_EVENTS, GENERATION_EVENTS, ImagesUsage
from loom.sdk.protocols import ImageJob, RunContext
from loom.sdk.types import Capability

from ..http.errors import error_body
from ..models import ModelEntry
from ..routing import ModelRouter

Events = tuple[type, type]


def check_stream(n: int, response_format: str) -> None:
    """What a streamed request cannot ask for, refused as OpenAI refuses it."""
    if n != 1:
        raise InvalidRequest("Streaming is only supported with n=1.", param="n")
    if response_format != "b64_json":
        raise InvalidRequest(
            "A streamed image is sent as b64_json; response_format 'url' cannot be streamed", param="response_format"
        )


class ImageStream:
    """One streamed image call: its task, the previews it sent, and the events they make."""

    def __init__(self, router: ModelRouter, model: str, job: ImageJob, events: Events) -> None:
        self.router, self.model, self.job = router, model, job
        self.partial, self.completed = events
        self.size = f"{job.width}x{job.height}"
        self.previews: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
        #: The preview start() waited for, sent first by events(): putting it back in the queue
        #: would put it behind the ones that came meanwhile (a fast provider sends them at once).
        self.first: tuple[bytes, int] | None = None
        loop = asyncio.get_running_loop()

        def on_preview(image: bytes, index: int) -> None:
            # On a worker's thread (the in-process executor) or on the loop.
            loop.call_soon_threadsafe(self._preview, image, index)

        self.ctx = RunContext(on_preview=on_preview)
        self.task: asyncio.Task[tuple[ModelEntry, list[bytes]]] | None = None
        self.sent = 0
        self.created = int(time.time())

    def _preview(self, image: bytes, index: int) -> None:
        self.previews.put_nowait((image, index))

    async def start(self) -> ModelEntry:
        """Start the call; return once it sent a preview or ended (raising its error if it failed),
        with the entry serving it (the first candidate while it still runs)."""
        self.task = asyncio.ensure_future(
            self.router.run(self.model, Capability.IMAGE, calls.GenerateImages(job=self.job), ctx=self.ctx)
        )
        waiter = asyncio.ensure_future(self.previews.get())
        try:
            await asyncio.wait({self.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the client left before anything came
            waiter.cancel()
            await self.stop()
            raise
        if waiter.done():
            self.first = waiter.result()
            return self.router.candidates(self.model, Capability.IMAGE)[0]
        waiter.cancel()
        entry, _ = self.task.result()  # raises the call's error with its status
        return entry

    def headers(self, entry: ModelEntry) -> dict[str, str]:
        headers = {"x-loom-model": entry.id, "x-loom-provider": entry.spec.provider}
        if self.ctx.work_id is not None:
            headers["x-loom-work-id"] = self.ctx.work_id
        return headers

    async def events(self) -> AsyncIterator[ServerSentEventMessage]:
        assert self.task is not None
        try:
            if self.first is not None:
                message = self._partial(*self.first)
                self.first = None
                if message is not None:
                    yield message
            while not self.task.done():
                getter = asyncio.ensure_future(self.previews.get())
                await asyncio.wait({self.task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    message = self._partial(*getter.result())
                    if message is not None:
                        yield message
                else:
                    getter.cancel()
            await asyncio.sleep(0)  # previews handed over just before the end
            while not self.previews.empty():
                message = self._partial(*self.previews.get_nowait())
                if message is not None:
                    yield message
            try:
                yield self._completed(self.task.result()[1])
            except LoomError as e:
                yield ServerSentEventMessage(data=error_body(e).decode(), event="error")
        finally:
            await self.stop()

    def _partial(self, image: bytes, index: int) -> ServerSentEventMessage | None:
        if self.sent >= (self.job.partial_images or 0):
            return None  # more than were asked for
        event = self.partial(
            b64_json=base64.b64encode(image).decode(),
            created_at=int(time.time()),
            size=self.size,
            partial_image_index=self.sent,
        )
        self.sent += 1
        return self._message(event)

    def _completed(self, images: list[bytes]) -> ServerSentEventMessage:
        if len(images) != 1:
            raise ProviderError(f"the image model returned {len(images)} images, 1 was asked for")
        event = self.completed(
            b64_json=base64.b64encode(images[0]).decode(),
            created_at=int(time.time()),
            size=self.size,
            usage=ImagesUsage(),
        )
        return self._message(event)

    @staticmethod
    def _message(event: msgspec.Struct) -> ServerSentEventMessage:
        return ServerSentEventMessage(data=msgspec.json.encode(event).decode(), event=str(event.__struct_config__.tag))

    async def stop(self) -> None:
        """Cancel the call if it still runs (the client left) and wait for it to settle."""
        if self.task is None or self.task.done():
            return
        self.ctx.cancel()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def stream_response(router: ModelRouter, model: str, job: ImageJob, *, edit: bool) -> ServerSentEvent:
    """The SSE answer of a streamed image request."""
    stream = ImageStream(router, model, job, EDIT_EVENTS if edit else GENERATION_EVENTS)
    entry = await stream.start()
    return ServerSentEvent(stream.events(), headers=stream.headers(entry), status_code=200)
