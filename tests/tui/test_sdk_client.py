"""The SDK additions the TUI stands on: admin and job routes, and the SSE iterator that reconnects
with Last-Event-ID (against httpx's MockTransport, so every request can be checked)."""

from __future__ import annotations

import json

import httpx
import pytest
from loom.sdk.client import AsyncLoomClient, LoomClient, ServerEvent, _read_events, describe_error
from loom.sdk.errors import AuthenticationFailed, NotFound


def sse(*events: tuple[int, str, dict]) -> bytes:
    return "".join(f"id: {i}\nevent: {kind}\ndata: {json.dumps(data)}\n\n" for i, kind, data in events).encode()


def stream(content: bytes) -> httpx.Response:
    """An SSE answer, as the daemon sends it."""
    return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})


def mock(handler) -> AsyncLoomClient:
    client = AsyncLoomClient("http://loom.test", api_key="k")
    client.http = httpx.AsyncClient(
        base_url=client.url, headers={"Authorization": "Bearer k"}, transport=httpx.MockTransport(handler)
    )
    return client


async def test_sse_parsing():
    lines = [": keepalive", "event: loaded", 'data: {"a":', "data: 1}", "id: 7", "", "data: plain", "", ": ka", ""]
    got = [e async for e in _read_events(stream("\n".join(lines).encode()))]
    assert got == [ServerEvent("loaded", {"a": 1}, "7"), ServerEvent("message", "plain", "7")]


async def test_events_reconnect_with_last_event_id():
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        assert request.headers["authorization"] == "Bearer k"
        if len(seen) == 1:
            return stream(sse((1, "a", {}), (2, "b", {})))
        if len(seen) == 2:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return stream(sse((3, "c", {"last": True})))

    status: list[tuple[bool, str | None]] = []
    client = mock(handler)
    events = [
        e
        async for e in client.events(
            "/x", retry=0, on_status=lambda up, why: status.append((up, why)), stop=lambda e: e.event == "c"
        )
    ]
    assert [e.event for e in events] == ["a", "b", "c"] and events[-1].data == {"last": True}
    assert seen == [None, "2", "2"]
    assert status == [
        (True, None),
        (False, "the daemon closed the stream"),
        (False, "connection refused"),
        (True, None),
    ]


async def test_errors_retrying_cannot_fix_are_raised():
    client = mock(lambda r: httpx.Response(401, json={"error": {"message": "bad key", "code": "invalid_api_key"}}))
    with pytest.raises(AuthenticationFailed):
        async for _ in client.events("/admin/events", retry=0):
            pass


async def test_job_events_end_with_the_final_state():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return stream(
            sse(
                (1, "state", {"type": "state", "data": {"state": "running"}}),
                (2, "progress", {"type": "progress", "data": {"progress": 50}}),
                (3, "state", {"type": "state", "data": {"state": "succeeded"}}),
            )
        )

    events = [e async for e in mock(handler).job_events("j1", retry=0)]
    assert [e.id for e in events] == ["1", "2", "3"] and calls == ["/v1/jobs/j1/events"]


async def test_job_events_of_a_finished_job_end_without_looping():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            assert request.headers["last-event-id"] == "9"
            return stream(b": nothing new\n\n")
        return httpx.Response(200, json={"id": "j1", "state": "cancelled"})

    assert [e async for e in mock(handler).job_events("j1", after=9, retry=0)] == []


def test_sync_routes_and_query():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.content))
        if request.url.path == "/metrics":
            return httpx.Response(200, text='loom_images_total{model="m"} 2.0\n')
        if request.url.path.startswith("/v1/files/"):
            return httpx.Response(200, content=b"PNG")
        if request.url.path.endswith("/nope"):
            return httpx.Response(404, json={"error": {"message": "No job"}})
        return httpx.Response(200, json={"ok": True})

    with LoomClient("http://loom.test") as client:
        client.http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(handler))
        client.jobs(state=["running", "queued"], pipeline="beam_search", limit=5)
        client.pin_model("a/b", False)
        client.switch_provider("chat", None)
        client.cancel_work("wk_1")
        assert client.file("/v1/files/output/x.png") == b"PNG" and client.file("output/y.png") == b"PNG"
        assert "loom_images_total" in client.metrics()
        with pytest.raises(NotFound):
            client.job("nope")
    query = "limit=5&offset=0&state=running%2Cqueued&pipeline=beam_search"
    assert seen[0][:2] == ("GET", f"http://loom.test/v1/jobs?{query}")
    assert seen[1] == ("POST", "http://loom.test/admin/models/a%2Fb/pin", b'{"pinned":false}')
    assert seen[2][2] == b'{"model":"chat","to":null}'
    assert seen[3][1] == "http://loom.test/admin/work/wk_1/cancel"
    assert [s[1] for s in seen[4:6]] == [f"http://loom.test/v1/files/output/{n}.png" for n in "xy"]


def test_describe_error_is_plain():
    request = httpx.Request("GET", "http://x")
    assert describe_error(httpx.ReadTimeout("t", request=request)) == "timed out"
    closed = httpx.RemoteProtocolError("peer closed", request=request)
    assert describe_error(closed) == "connection closed by the daemon"
