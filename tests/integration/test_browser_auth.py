"""Browser clients: the event streams and WebSockets take a short-lived token (minted by an
authenticated call) as ``?token=`` or a credential as the WebSocket subprotocol, never a key in a
URL; the token keeps the role of the key that minted it, and it expires."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import websockets
import websockets.sync.client as ws_client
from loom.daemon.keys import StreamTokens
from loom.daemon.principals import Principal
from loom.daemon.serving import RedactTokens

USER, ADMIN = "user-secret-1", "admin-secret-1"


@pytest.fixture(scope="module")
def job_id(keyed_daemon):
    r = httpx.post(
        f"{keyed_daemon.url}/v1/pipelines/haiku",
        json={"topic": "the sea", "chat_model": "mock-chat", "illustrate": False},
        headers={"Authorization": f"Bearer {USER}"},
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def mint(daemon, key: str) -> dict:
    r = httpx.post(f"{daemon.url}/v1/stream-tokens", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_token_opens_a_jobs_event_stream_and_a_key_in_the_url_does_not(keyed_daemon, job_id):
    url = f"{keyed_daemon.url}/v1/jobs/{job_id}/events"
    token = mint(keyed_daemon, USER)
    assert token["role"] == "user" and token["token"].startswith("lst_") and 0 < token["expires_in"] <= 300
    r = httpx.get(url, params={"token": token["token"]}, timeout=30)
    assert r.status_code == 200 and "event: state" in r.text
    assert httpx.get(url, params={"token": USER}).status_code == 401  # keys never go in a URL
    assert httpx.get(url, params={"token": "lst_made-up"}).status_code == 401
    assert httpx.get(url).status_code == 401
    # Only the stream routes take it.
    assert httpx.get(f"{keyed_daemon.url}/v1/jobs/{job_id}", params={"token": token["token"]}).status_code == 401


def test_a_token_keeps_the_role_of_its_key(keyed_daemon):
    url = f"{keyed_daemon.url}/admin/events"
    user = mint(keyed_daemon, USER)["token"]
    assert httpx.get(url, params={"token": user}).status_code == 403
    admin = mint(keyed_daemon, ADMIN)
    assert admin["role"] == "admin"
    with httpx.stream("GET", url, params={"token": admin["token"]}, timeout=30) as r:
        assert r.status_code == 200 and next(r.iter_lines()).startswith(":")


def test_websocket_takes_a_token_or_a_key_as_its_subprotocol(keyed_daemon, job_id):
    url = keyed_daemon.url.replace("http://", "ws://") + "/v1/ws"
    token = mint(keyed_daemon, USER)["token"]
    for credential in (token, USER):
        with ws_client.connect(url, subprotocols=["loom", f"loom.bearer.{credential}"]) as ws:
            assert ws.subprotocol == "loom"  # never the credential echoed back
            ws.send(json.dumps({"op": "subscribe", "jobs": [job_id]}))
            assert json.loads(ws.recv(timeout=10))["op"] == "subscribed"
    with (
        pytest.raises(websockets.exceptions.InvalidStatus),
        ws_client.connect(url, subprotocols=["loom", "loom.bearer.lst_wrong"]),
    ):
        pass
    admin_url = keyed_daemon.url.replace("http://", "ws://") + "/admin/ws"
    with ws_client.connect(admin_url, subprotocols=["loom", f"loom.bearer.{mint(keyed_daemon, ADMIN)['token']}"]) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"


def test_tokens_expire(monkeypatch):
    import loom.daemon.keys as keys

    tokens = StreamTokens(ttl=60)
    admin = Principal("ops", "admin")
    token, expires = tokens.mint(admin)
    assert tokens.principal_of(token) == admin
    monkeypatch.setattr(keys.time, "time", lambda: expires + 1)
    assert tokens.principal_of(token) is None
    tokens.mint(Principal("ada", "user"))
    assert token not in tokens._tokens  # forgotten, not kept forever


def test_the_access_log_never_shows_a_token():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", "/v1/jobs/x/events?after=3&token=lst_secret", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    assert "lst_secret" not in record.getMessage() and "after=3&token=[redacted]" in record.getMessage()
