"""OpenTelemetry traces of where a request's time went (off unless configured).

``[daemon.tracing] otlp_endpoint`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns it on; it needs the ``otel`` extra. Then:

- :mod:`.http`: a span per HTTP request (an incoming W3C ``traceparent`` is its parent), its
  trace id in the ``x-loom-trace-id`` response header and the access log;
- :mod:`.work`: per scheduler work item a GenAI span (``chat mock-chat``, with the GenAI semantic
  conventions' ``gen_ai.*`` attributes and token usage) with child spans for its queue wait, the
  load it set off (and the evictions that load made), the call on its worker (the round trip)
  and, for text, prefill and decode as the daemon sees them (until the first token, then the rest);
- a pipeline job is a span whose steps are child spans (:mod:`loom.daemon.jobs`); plugins add
  their own through :mod:`loom.sdk.tracing` (the openai plugin's upstream call, beam search's
  candidates).

Off, none of it exists: no middleware is installed, work items carry no trace, and the scheduler's
only cost is an ``is None`` check at a few points of an item's life. OpenTelemetry is imported
only when tracing is on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from loom.sdk.errors import ConfigError

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("loom.tracing")

#: The OTLP/HTTP path of traces, added to an endpoint given without it (as the OTLP spec does
#: for ``OTEL_EXPORTER_OTLP_ENDPOINT``).
TRACES_PATH = "/v1/traces"
_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class Tracing:
    """The daemon's tracer provider and tracer (one per app, never the global provider), built
    only when tracing is on."""

    def __init__(self, exporter: Any, service_name: str = "loom", batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("loom.daemon")
        from .work import WorkTrace

        self._work = WorkTrace

    @classmethod
    def from_config(cls, config: Config, exporter: Any = None) -> Tracing | None:
        """The tracing the config (or the environment) asks for; None when off. ``exporter``
        (a test's in-memory one) turns it on whatever the config says, each span exported as it
        ends."""
        settings = config.daemon.tracing
        if exporter is not None:
            return cls(exporter, settings.service_name, batch=False)
        endpoint = settings.otlp_endpoint
        from_env = not endpoint and any(os.environ.get(name) for name in _ENV)
        if not endpoint and not from_env:
            return None
        if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            message = "tracing needs OpenTelemetry: pip install 'loom-daemon[otel]'"
            if from_env:  # the variable may be meant for other programs: Loom stays up, untraced
                log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set, but %s; traces are off", message)
                return None
            raise ConfigError(f"[daemon.tracing] otlp_endpoint is set, but {message}") from None
        if endpoint and not endpoint.rstrip("/").endswith(TRACES_PATH):
            endpoint = endpoint.rstrip("/") + TRACES_PATH
        # Without an endpoint of its own the exporter reads the OTEL_EXPORTER_OTLP_* variables
        # (headers, timeout, compression) as the spec says.
        exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        log.info("tracing to %s", endpoint or "the OTEL_EXPORTER_OTLP_* endpoint")
        return cls(exporter, settings.service_name)

    def middleware(self) -> Any:
        """The ASGI middleware that makes each HTTP request's span (:mod:`.http`)."""
        from .http import request_spans

        return request_spans(self.tracer)

    def work(self, item: Any, position: int) -> Any:
        """The trace of one scheduler work item (:class:`.work.WorkTrace`), a child of the span
        current where it was submitted."""
        return self._work(self.tracer, item, position)

    @contextmanager
    def job(self, job_id: str, pipeline: str, attempt: int) -> Iterator[None]:
        """A pipeline job's run as the current span: its steps (``ctx.step``), the plugin's own
        spans (beam search's candidates) and its model calls are children. A job submitted over
        HTTP continues the request's trace (its task started in the request's context); a job
        resumed at start-up begins a trace of its own."""
        from .work import current

        attrs: dict[str, str | int] = {"loom.job.id": job_id, "loom.pipeline": pipeline, "loom.job.attempt": attempt}
        with self.tracer.start_as_current_span(f"job {pipeline}", attributes=attrs), current(self.tracer):
            yield

    def close(self) -> None:
        """Export what is left and stop (the app's lifespan ends)."""
        self.provider.shutdown()
