"""A span per HTTP request: the server span every other span of the request hangs under.

An incoming W3C ``traceparent`` (and ``tracestate``) makes it a child of the caller's span; its
trace id goes out in the ``x-loom-trace-id`` response header and into the scope, where the access
log (the outer middleware) reads it. A streamed answer's span ends with the stream.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from loom.sdk import tracing as sdk_tracing
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..access_log import TRACE_ID_KEY

#: The response header with the request's trace id (32 hex digits).
TRACE_HEADER = "x-loom-trace-id"
_PROPAGATED = (b"traceparent", b"tracestate")
_propagator = TraceContextTextMapPropagator()


def trace_id_of(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def request_spans(tracer: Any):
    """ASGI middleware (a Litestar ``middleware=`` entry) making each request's span."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _PROPAGATED}
            parent = _propagator.extract(carrier) if carrier else otel_context.Context()
            method, path = scope["method"], scope["path"]  # type: ignore[typeddict-item]
            # Litestar runs app middleware once the route is known: its template names the span
            # (``POST /v1/jobs/{job_id}/cancel``, not one name per id).
            route = scope.get("path_template") or path
            span = tracer.start_span(
                f"{method} {route}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": path, "http.route": route},
            )
            trace_id = trace_id_of(span)
            scope[TRACE_ID_KEY] = trace_id  # type: ignore[literal-required]
            header = (TRACE_HEADER.encode(), trace_id.encode())

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    message["headers"] = [*message.get("headers", ()), header]
                await send(message)

            token = otel_context.attach(trace.set_span_in_context(span, parent))
            tracer_token = sdk_tracing.use_tracer(tracer)
            try:
                await app(scope, receive, sending)
            except BaseException as e:
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, type(e).__name__))
                raise
            finally:
                sdk_tracing.reset_tracer(tracer_token)
                otel_context.detach(token)
                span.end()

        return traced

    return wrap
