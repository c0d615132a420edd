"""The scheduler's admin routes in-process (Litestar's TestClient): state, load/unload/pin, cancel,
the WebSocket event stream, /metrics, and the admin guard. SSE is tested against a live daemon in
tests/integration/test_admin_scheduler.py."""

from __future__ import annotations

import json
import tomllib

import pytest
from litestar.testing import TestClient
from loom.daemon.app import create_app
from loom.daemon.config import decode_config

MIB = 2**20

CONFIG = """
[daemon]
data_dir = "{data_dir}"

[scheduler.devices.cpu]
budget = "300MiB"

[[models]]
id = "small"
provider = "mock"
capabilities = ["chat"]
options = {{ memory_mb = 100 }}

[[models]]
id = "medium"
provider = "mock"
capabilities = ["chat"]
options = {{ memory_mb = 150 }}

[[models]]
id = "large"
provider = "mock"
capabilities = ["chat"]
options = {{ memory_mb = 200 }}
"""


def app_for(tmp_path, extra: str = ""):
    raw = tomllib.loads(CONFIG.format(data_dir=tmp_path) + extra)
    return create_app(decode_config(raw))


@pytest.fixture
def client(tmp_path):
    with TestClient(app_for(tmp_path)) as c:
        yield c


def cpu(client) -> dict:
    snap = client.get("/admin/scheduler").json()
    return next(d for d in snap["devices"] if d["name"] == "cpu")


def test_scheduler_state_and_residency_routes(client):
    state = cpu(client)
    assert state["budget"] == 300 * MIB and state["used"] == 0 and state["resident"] == []

    r = client.post("/admin/models/small/load")
    assert r.status_code == 200 and r.json()["loaded"] is True
    assert client.post("/admin/models/medium/load").json()["loaded"]
    assert [m["model"] for m in cpu(client)["resident"]] == ["small", "medium"]

    assert client.post("/admin/models/small/pin", json={"pinned": True}).json()["pinned"] is True
    client.post("/admin/models/large/load")  # 200 MiB: medium must go, small is pinned
    assert sorted(m["model"] for m in cpu(client)["resident"]) == ["large", "small"]
    assert cpu(client)["used"] <= 300 * MIB

    assert client.post("/admin/models/small/pin", content=b"").json()["pinned"] is True  # default true
    assert client.post("/admin/models/small/pin", json={"pinned": False}).json()["pinned"] is False
    r = client.post("/admin/models/large/unload")
    assert r.json()["unloaded"] is True and r.json()["loaded"] is False
    assert [m["model"] for m in cpu(client)["resident"]] == ["small"]


def test_errors(client):
    assert client.post("/admin/models/nope/load").status_code == 404
    assert client.post("/admin/work/wk_nothing/cancel").status_code == 404
    assert client.post("/admin/models/small/pin", json={"pinned": "yes"}).status_code == 400


def test_metrics(client):
    client.post("/admin/models/small/load")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'loom_model_loads_total{device="cpu",model="small"} 1.0' in text
    assert 'loom_device_memory_bytes{device="cpu",kind="budget"}' in text


def test_websocket_sends_a_snapshot_then_events(client):
    with client.websocket_connect("/admin/ws") as ws:
        first = json.loads(ws.receive_text())
        assert first["type"] == "snapshot" and "devices" in first["scheduler"]
        client.post("/admin/models/small/load")
        seen = []
        while "loaded" not in seen:
            seen.append(json.loads(ws.receive_text())["type"])
        assert seen[-1] == "loaded"


def test_admin_routes_need_an_admin_key(tmp_path, monkeypatch):
    monkeypatch.setenv("T_SCHED_USER", "user-key")
    monkeypatch.setenv("T_SCHED_ADMIN", "admin-key")
    keys = (
        '\n[[daemon.api_keys]]\nkey = { env = "T_SCHED_USER" }\n'
        '\n[[daemon.api_keys]]\nkey = { env = "T_SCHED_ADMIN" }\nrole = "admin"\n'
    )
    raw = tomllib.loads(CONFIG.format(data_dir=tmp_path).replace("\n[scheduler", keys + "\n[scheduler", 1))
    with TestClient(create_app(decode_config(raw))) as c:
        assert c.get("/admin/scheduler").status_code == 401
        assert c.get("/metrics", headers={"authorization": "Bearer user-key"}).status_code == 403
        assert c.get("/admin/scheduler", headers={"authorization": "Bearer admin-key"}).status_code == 200
        assert c.get("/metrics", headers={"authorization": "Bearer admin-key"}).status_code == 200
