"""The trace of one scheduler work item: a GenAI span with its queue wait, load, worker call,
prefill and decode.

The item's span is named as the GenAI semantic conventions name a model call
(``{gen_ai.operation.name} {gen_ai.request.model}``: ``chat mock-chat``) and carries their
attributes: the operation, the model asked for and the one that answered, the provider as
``gen_ai.system`` (and ``gen_ai.provider.name``, the newer name), the request's sampling
parameters and, at the end, ``gen_ai.usage.input_tokens`` / ``output_tokens``. Its children:

- ``queue wait``: from submission to start, with the place in line it arrived at;
- ``load <model>``: a load this item set off, with ``evict <model>`` children for what it evicted;
- ``worker call``: the round trip to the model's worker (its executor and process id);
- ``prefill`` and ``decode``, for text: until the first token reached the daemon, then the
  rest, as the daemon measures them (no provider reports its own timings; a worker process's
  hop is in them). Made when the call ends, from the times recorded on the way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from loom.sdk import calls
from loom.sdk import tracing as sdk_tracing
from loom.sdk.protocols import Embeddings, TextChunk
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

#: gen_ai.operation.name of each call (the conventions' names where one fits).
OPERATIONS: dict[type, str] = {
    calls.Chat: "chat",
    calls.Complete: "text_completion",
    calls.Embed: "embeddings",
    calls.GenerateImages: "generate_content",
    calls.Describe: "chat",
    calls.Score: "generate_content",
    calls.Translate: "generate_content",
}
#: The request's sampling parameters, as gen_ai.request.* attributes.
_REQUEST_FIELDS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}


def attributes(item: Any) -> tuple[str, dict[str, Any]]:
    """The span name and GenAI attributes of a work item."""
    entry, call = item.entry, item.call
    request = getattr(call, "request", None)
    attrs: dict[str, Any] = {
        # The name asked for (an alias, a switched or fallen-back model) and the model that serves.
        "gen_ai.request.model": getattr(request, "model", None) or entry.id,
        "gen_ai.response.model": entry.id,
        "gen_ai.system": entry.spec.provider,
        "gen_ai.provider.name": entry.spec.provider,
        "loom.work_id": item.id,
        "loom.device": item.device,
        "loom.priority": item.priority.name.lower(),
        "loom.executor": entry.executor,
    }
    if item.kind == "load":  # an explicit load (the admin API, a pin): its own load is a child
        return f"make resident {entry.id}", attrs
    operation = OPERATIONS.get(type(call), "generate_content")
    attrs["gen_ai.operation.name"] = operation
    if isinstance(call, calls.Call):
        attrs["loom.call"] = call.__struct_config__.tag
    for field, key in _REQUEST_FIELDS.items():
        value = getattr(request, field, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[key] = value
    return f"{operation} {entry.id}", attrs


def _error(span: Any, error: BaseException | None, outcome: str) -> None:
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, getattr(error, "message", None) or str(error)))
        span.set_attribute("error.type", type(error).__name__)
    span.set_attribute("loom.outcome", outcome)


class WorkTrace:
    """Spans of one item, ended as its life goes on (the dispatcher calls each method once)."""

    def __init__(self, tracer: Any, item: Any, position: int) -> None:
        self.tracer = tracer
        name, attrs = attributes(item)
        # The span current where the item was submitted (the request's, a job step's) is its parent.
        kind = SpanKind.INTERNAL if item.entry.local else SpanKind.CLIENT  # a remote model: a client call
        self.span = tracer.start_span(name, kind=kind, attributes=attrs)
        self.context = trace.set_span_in_context(self.span)
        self.queue = tracer.start_span("queue wait", context=self.context, attributes={"loom.queue.position": position})
        self.worker: Any = None
        self.call_started = 0
        self.first_token = 0
        self.final: Any = None

    # --- queued -----------------------------------------------------------------------------

    def started(self, waited: float) -> None:
        self.queue.set_attribute("loom.queue.waited_seconds", round(waited, 6))
        self.queue.end()

    def dropped(self, error: BaseException, outcome: str) -> None:
        """Ended without running (cancelled, timed out in the queue, a failed load)."""
        _error(self.queue, error, outcome)
        self.queue.end()
        _error(self.span, error, outcome)
        self.span.end()

    def settled(self) -> None:
        """An explicit load whose model is resident: done."""
        self.queue.end()
        _error(self.span, None, "finished")
        self.span.end()

    @contextmanager
    def loading(self, model: str, device: str, evicting: list[str]) -> Iterator[None]:
        """The load this item set off; evictions inside it are its children."""
        span = self.tracer.start_span(
            f"load {model}",
            context=self.context,
            attributes={"loom.model": model, "loom.device": device, "loom.load.evicts": evicting},
        )
        with self._current(span):
            try:
                yield
            except BaseException as e:
                _error(span, e, "failed")
                raise
            finally:
                span.end()

    # --- running ----------------------------------------------------------------------------

    @contextmanager
    def running(self, executor: str, pid: int | None) -> Iterator[None]:
        """The call on its worker: current while it runs, so spans a provider makes on the event
        loop (an upstream call) are its children."""
        attrs: dict[str, Any] = {"loom.worker.executor": executor}
        if pid is not None:
            attrs["loom.worker.pid"] = pid
        self.call_started = time.time_ns()
        self.worker = self.tracer.start_span(
            "worker call", context=self.context, attributes=attrs, start_time=self.call_started
        )
        with self._current(self.worker):
            yield

    def watch(self, sink: Callable[[Any], None]) -> Callable[[Any], None]:
        """``sink`` that also notes when the first token came and keeps the final chunk."""

        def watched(chunk: Any) -> None:
            if not self.first_token and (getattr(chunk, "text", None) or getattr(chunk, "tool_calls", None)):
                self.first_token = time.time_ns()
            if getattr(chunk, "completion_tokens", None) is not None:
                self.final = chunk
            sink(chunk)

        return watched

    def finished(self, result: Any, error: BaseException | None, outcome: str) -> None:
        end = time.time_ns()
        worker = self.worker
        if worker is not None:
            _error(worker, error, outcome)
            if self.first_token:  # text: prefill until the first token, decode after it
                under = trace.set_span_in_context(worker)
                prefill = self.tracer.start_span("prefill", context=under, start_time=self.call_started)
                prefill.end(end_time=self.first_token)
                decode = self.tracer.start_span("decode", context=under, start_time=self.first_token)
                decode.end(end_time=end)
            worker.end(end_time=end)
        self._usage(result)
        _error(self.span, error, outcome)
        self.span.end(end_time=end)

    def _usage(self, result: Any) -> None:
        final = self.final
        if final is None and isinstance(result, list):
            final = next((c for c in reversed(result) if getattr(c, "completion_tokens", None) is not None), None)
            if final is None and result and all(isinstance(r, (bytes, bytearray)) for r in result):
                self.span.set_attribute("loom.images", len(result))
        if isinstance(final, TextChunk):
            if final.prompt_tokens is not None:
                self.span.set_attribute("gen_ai.usage.input_tokens", final.prompt_tokens)
            if final.completion_tokens is not None:
                self.span.set_attribute("gen_ai.usage.output_tokens", final.completion_tokens)
            if final.cached_tokens:
                self.span.set_attribute("gen_ai.usage.cache_read.input_tokens", final.cached_tokens)
            if final.finish_reason:
                self.span.set_attribute("gen_ai.response.finish_reasons", [final.finish_reason])
        elif isinstance(result, Embeddings):
            self.span.set_attribute("gen_ai.usage.input_tokens", result.prompt_tokens)

    @contextmanager
    def _current(self, span: Any) -> Iterator[None]:
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            with current(self.tracer):
                yield
        finally:
            otel_context.detach(token)


@contextmanager
def current(tracer: Any) -> Iterator[None]:
    """Spans plugins make here (:func:`loom.sdk.tracing.span`) go to ``tracer``."""
    token = sdk_tracing.use_tracer(tracer)
    try:
        yield
    finally:
        sdk_tracing.reset_tracer(token)
