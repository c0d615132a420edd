"""Spans for plugins: ``with tracing.span("name", {"key": value}) as s: ...``.

The daemon traces a request, its queue wait, the model's load and the call on its worker with
OpenTelemetry when ``[daemon.tracing]`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) turns it on. A
plugin that wants a part of its own work in the trace (a provider's upstream HTTP call, a
pipeline's candidate) wraps it in :func:`span`: the span is a child of whatever the daemon is
tracing at that point. Without tracing (or without ``opentelemetry`` installed) :func:`span` is a
shared do-nothing object, so a plugin never checks first and pays a context-variable read.

A span made on a thread of the provider's own, or in a model worker process, is not in the trace:
the daemon's context reaches the event loop's tasks only (remote providers' ``async`` calls,
pipelines).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from typing import Any

#: What a span attribute may hold (OpenTelemetry's types).
AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]

#: The daemon's tracer for the work this context does; None while nothing is traced.
_tracer: contextvars.ContextVar[Any] = contextvars.ContextVar("loom_tracer", default=None)


class _NoSpan:
    """The span of work nobody traces: every method does nothing."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        return None


NO_SPAN = _NoSpan()


class _Span:
    """A live span, current while its ``with`` block runs (OpenTelemetry's own
    ``start_as_current_span``: an exception leaving the block is recorded on it)."""

    def __init__(self, tracer: Any, name: str, attributes: Mapping[str, AttributeValue] | None) -> None:
        self._manager = tracer.start_as_current_span(name, attributes=attributes)
        self._span: Any = None

    def __enter__(self) -> _Span:
        self._span = self._manager.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._manager.__exit__(*exc)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self._span.add_event(name, attributes=attributes)


def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> _Span | _NoSpan:
    """A span named ``name`` around a ``with`` block, a child of the span the daemon has current
    (a do-nothing one when nothing is traced)."""
    tracer = _tracer.get()
    return NO_SPAN if tracer is None else _Span(tracer, name, attributes)


def tracing() -> bool:
    """Whether the work this context does is traced (to skip preparing costly attributes)."""
    return _tracer.get() is not None


def use_tracer(tracer: Any) -> contextvars.Token:
    """For the daemon: spans made in this context from now on go to ``tracer`` (an OpenTelemetry
    ``Tracer``); ``reset_tracer`` with the token ends that."""
    return _tracer.set(tracer)


def reset_tracer(token: contextvars.Token) -> None:
    _tracer.reset(token)
