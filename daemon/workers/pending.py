"""The daemon's side of calls in flight on a worker that speaks the wire's messages (a worker
process, a Ray actor): each call's context, how its values decode, where its chunks go, and the
future its end settles.

A worker opens a call here, sends ``Run`` its own way, and hands every ``Chunk``, ``Result``,
``Progress``, ``Preview`` and ``Failed`` it gets back to :meth:`PendingCalls.deliver`; when the worker dies,
:meth:`PendingCalls.fail_all` ends every call with the same error.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from types import GenericAlias
from typing import Any

import msgspec
from loom.sdk.calls import Call
from loom.sdk.errors import ProviderError
from loom.sdk.protocols import RunContext

from .wire import Chunk, Failed, Preview, Progress, Result, rebuild_error


class Pending:
    """One call in flight."""

    __slots__ = ("ctx", "decoder", "future", "remove", "sink")

    def __init__(self, ctx: RunContext, decoder: msgspec.msgpack.Decoder, sink: Callable[[Any], None] | None) -> None:
        self.ctx = ctx
        self.decoder = decoder
        self.sink = sink
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.remove: Callable[[], None] = lambda: None

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class PendingCalls:
    """Calls in flight on one worker, by id (ids start at 1: 0 is the load)."""

    def __init__(self, model: str, where: str) -> None:
        self.model = model
        #: How the worker is named in errors ("runs in a worker process", "runs in a Ray actor").
        self.where = where
        self.ids = itertools.count(1)
        self.calls: dict[int, Pending] = {}
        self._decoders: dict[Any, msgspec.msgpack.Decoder] = {}

    def open(self, work: Any, ctx: RunContext, sink: Callable[[Any], None] | None) -> tuple[int, Pending]:
        """Register a call (not sent yet); raises for work that is not a provider call as data."""
        if not isinstance(work, Call):
            raise ProviderError(
                f"model '{self.model}' {self.where}, which takes provider calls as data "
                f"(loom.sdk.calls), not {type(work).__name__}"
            )
        call_id = next(self.ids)
        pending = Pending(ctx, self._decoder(work, sink is not None), sink)
        self.calls[call_id] = pending
        return call_id, pending

    def _decoder(self, call: Call, stream: bool) -> msgspec.msgpack.Decoder:
        type_ = call.returns if stream or not call.streams else GenericAlias(list, call.returns)
        decoder = self._decoders.get(type_)
        if decoder is None:
            decoder = self._decoders[type_] = msgspec.msgpack.Decoder(type_)
        return decoder

    def get(self, call_id: int) -> Pending | None:
        return self.calls.get(call_id)

    def close(self, call_id: int) -> None:
        pending = self.calls.pop(call_id, None)
        if pending is not None:
            pending.remove()

    def deliver(self, message: Chunk | Result | Progress | Preview | Failed) -> None:
        """What the worker said about one call."""
        pending = self.calls.get(message.id)
        if pending is None:
            return
        if isinstance(message, Chunk):
            if pending.sink is not None and not pending.future.done():
                try:
                    pending.sink(pending.decoder.decode(message.value))
                except msgspec.DecodeError as e:
                    expected = getattr(pending.decoder.type, "__name__", pending.decoder.type)
                    pending.fail(
                        ProviderError(f"model '{self.model}' sent a chunk that is no loom.sdk.{expected}: {e}")
                    )
        elif isinstance(message, Result):
            if pending.future.done():
                return
            if pending.sink is not None:
                pending.future.set_result(None)
            else:
                try:
                    pending.future.set_result(pending.decoder.decode(message.value))
                except msgspec.DecodeError as e:
                    pending.fail(ProviderError(f"model '{self.model}' answered a value that does not decode: {e}"))
        elif isinstance(message, Progress):
            pending.ctx.report(message.done, message.total, message.message)
        elif isinstance(message, Preview):
            pending.ctx.show(message.image, message.index)
        else:
            pending.fail(rebuild_error(message.error))

    def fail_all(self, error: BaseException) -> None:
        for pending in list(self.calls.values()):
            pending.fail(error)
