"""The scheduler's admin surface on a live daemon: /admin/scheduler, load/unload/pin, the SSE event
stream showing loads and evictions, cancelling work by id, 429 from a full queue, and /metrics."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import Daemon, write_config

MIB = 2**20

CONFIG = """
[daemon]
host = "127.0.0.1"

[scheduler]
keep_alive_interval = 0.2

[scheduler.devices.cpu]
budget = "300MiB"

[[models]]
id = "sched-a"
provider = "mock"
capabilities = ["chat"]
keep_alive = -1
options = { memory_mb = 100, load_seconds = 0.05 }

[[models]]
id = "sched-b"
provider = "mock"
capabilities = ["chat"]
keep_alive = -1
options = { memory_mb = 100, load_seconds = 0.05 }

[[models]]
id = "sched-c"
provider = "mock"
capabilities = ["chat"]
keep_alive = -1
options = { memory_mb = 150, load_seconds = 0.05 }

[[models]]
id = "sched-slow"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 10, latency_ms = 20000 }

[[models]]
id = "sched-limited"
provider = "mock"
capabilities = ["chat"]
max_queue = 1
options = { memory_mb = 10, latency_ms = 1500 }
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sched")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


class EventReader:
    """Reads /admin/events in a thread; ``wait_for`` blocks until a matching event arrives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "no SSE stream"

    def _read(self) -> None:
        with httpx.stream("GET", f"{self.url}/admin/events", timeout=None) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event_type = None
            for line in r.iter_lines():
                if self.stop:
                    return
                if line.startswith(":"):
                    self.ready.set()
                elif line.startswith("event:"):
                    event_type = line[6:].strip()
                elif line.startswith("data:"):
                    event = json.loads(line[5:])
                    assert event["type"] == event_type
                    with self.cond:
                        self.events.append(event)
                        self.cond.notify_all()

    def wait_for(self, timeout: float = 10, **match) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if all(e.get(k) == v for k, v in match.items()):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no event {match}; saw {[(e['type'], e['model']) for e in self.events]}")
                self.cond.wait(left)

    def close(self) -> None:
        self.stop = True


def cpu(daemon) -> dict:
    r = httpx.get(f"{daemon.url}/admin/scheduler")
    assert r.status_code == 200
    return next(d for d in r.json()["devices"] if d["name"] == "cpu")


def resident(daemon) -> list[str]:
    return sorted(m["model"] for m in cpu(daemon)["resident"])


def post(daemon, path, **kw) -> httpx.Response:
    return httpx.post(f"{daemon.url}{path}", timeout=30, **kw)


def test_scheduler_state(daemon):
    state = cpu(daemon)
    assert state["budget"] == 300 * MIB and state["kind"] == "cpu"
    assert {"used", "free", "resident", "queue", "running"} <= set(state)


def test_load_evict_pin_unload_show_in_the_event_stream(daemon):
    events = EventReader(daemon.url)
    try:
        for m in ("sched-a", "sched-b"):
            r = post(daemon, f"/admin/models/{m}/load")
            assert r.status_code == 200 and r.json()["loaded"]
            events.wait_for(type="loaded", model=m)
        assert {"sched-a", "sched-b"} <= set(resident(daemon))

        post(daemon, "/admin/models/sched-c/load")  # 150 MiB: one of a, b (a: least recent) goes
        events.wait_for(type="loaded", model="sched-c")
        evicted = events.wait_for(type="evicted", model="sched-a")
        assert evicted["reason"] == "evicted" and evicted["footprint"] == 100 * MIB
        assert resident(daemon) == ["sched-b", "sched-c"]
        assert cpu(daemon)["used"] <= 300 * MIB

        assert post(daemon, "/admin/models/sched-b/pin", json={"pinned": True}).json()["pinned"]
        events.wait_for(type="pinned", model="sched-b")
        post(daemon, "/admin/models/sched-a/load")  # b is pinned: c must go
        events.wait_for(type="evicted", model="sched-c")
        assert resident(daemon) == ["sched-a", "sched-b"]

        r = post(daemon, "/admin/models/sched-a/unload")
        assert r.json()["unloaded"] is True
        events.wait_for(type="unloaded", model="sched-a")
        memory = events.wait_for(type="memory", device="cpu")
        assert memory["budget"] == 300 * MIB
        assert resident(daemon) == ["sched-b"]
        post(daemon, "/admin/models/sched-b/pin", json={"pinned": False})
    finally:
        events.close()


def test_chat_work_shows_queued_started_finished(daemon):
    events = EventReader(daemon.url)
    try:
        body = {"model": "sched-a", "messages": [{"role": "user", "content": "hi"}]}
        r = post(daemon, "/v1/chat/completions", json=body)
        assert r.status_code == 200
        queued = events.wait_for(type="queued", model="sched-a")
        assert queued["priority"] == "interactive" and queued["item"].startswith("wk_")
        events.wait_for(type="started", item=queued["item"])
        events.wait_for(type="finished", item=queued["item"])
    finally:
        events.close()


def test_cancel_running_work_by_id(daemon):
    events = EventReader(daemon.url)
    try:
        body = {"model": "sched-slow", "messages": [{"role": "user", "content": "take your time"}]}
        with ThreadPoolExecutor(1) as pool:
            t0 = time.monotonic()
            pending = pool.submit(post, daemon, "/v1/chat/completions", json=body)
            started = events.wait_for(type="started", model="sched-slow")
            r = post(daemon, f"/admin/work/{started['item']}/cancel")
            assert r.status_code == 200 and r.json()["cancelled"] is True
            answer = pending.result(timeout=15)
            assert answer.status_code == 499 and answer.json()["error"]["code"] == "cancelled"
            assert time.monotonic() - t0 < 10  # not the 20 s the mock would take
        events.wait_for(type="cancelled", item=started["item"])
        assert post(daemon, "/admin/work/wk_unknown/cancel").status_code == 404
    finally:
        events.close()


def test_full_queue_is_429_with_retry_after(daemon):
    body = {"model": "sched-limited", "messages": [{"role": "user", "content": "hi"}]}
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, daemon, "/v1/chat/completions", json=body)
        deadline = time.monotonic() + 10
        while not any(i["model"] == "sched-limited" for i in cpu(daemon)["running"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = pool.submit(post, daemon, "/v1/chat/completions", json=body)
        while cpu(daemon)["queue"]["by_model"].get("sched-limited") is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        third = post(daemon, "/v1/chat/completions", json=body)
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
        assert first.result().status_code == 200 and second.result().status_code == 200


def test_metrics(daemon):
    post(daemon, "/admin/models/sched-a/load")
    r = httpx.get(f"{daemon.url}/metrics")
    assert r.status_code == 200
    text = r.text
    for name in (
        "loom_queue_depth",
        "loom_queue_wait_seconds_bucket",
        "loom_run_seconds_bucket",
        "loom_model_loads_total",
        "loom_model_evictions_total",
        "loom_model_load_seconds_bucket",
        "loom_device_memory_bytes",
        "loom_tokens_total",
        "loom_images_total",
    ):
        assert name in text, name
    assert 'loom_model_loads_total{device="cpu",model="sched-a"}' in text


def test_websocket_streams_events(daemon):
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{daemon.port}/admin/ws", open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "snapshot" and "devices" in first["scheduler"]
        post(daemon, "/admin/models/sched-b/unload")
        assert post(daemon, "/admin/models/sched-b/load").status_code == 200
        deadline = time.monotonic() + 10
        while True:
            event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if event["type"] == "loaded" and event["model"] == "sched-b":
                break
