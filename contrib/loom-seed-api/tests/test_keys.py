"""On a daemon with keys, the seeds' routes take the key their front ends send as a bearer token
(seed 000's JWT header) and refuse a request without one; seed 003's signed image URLs open
without a key, as an ``<img>`` tag needs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import socketio
from loom.sdk.testing import LoomServer
from seed_helpers import CONFIG

KEY = "seed-user-key-1"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    config = CONFIG.replace(
        '[daemon]\nhost = "127.0.0.1"\n',
        '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_SEED_KEY" }\n',
    )
    with LoomServer(config, tmp_path_factory.mktemp("seed-keys"), env={"T_SEED_KEY": KEY}) as server:
        yield server


def test_generator_route_takes_the_bearer_token(keyed):
    body = {"Prompt": "Write a short story", "Audience": "children"}
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        assert c.post("/api/router_generator/Gpt2_Text_Generator", json=body).status_code == 401
        ok = c.post("/api/router_generator/Gpt2_Text_Generator", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["Status"] is True
        assert c.get("/api/providers/status").status_code == 401


def test_socket_io_takes_the_bearer_token(keyed):
    async def connect(headers: dict) -> bool:
        # The websocket transport: python-socketio's client sends its headers with the first poll
        # only (a browser's socket.io sends extraHeaders with every one).
        sio = socketio.AsyncClient()
        try:
            await sio.connect(keyed.url, headers=headers, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            if sio.eio.http is not None:  # the HTTP session the refused handshake opened
                await sio.eio.http.close()
            return False
        await sio.disconnect()
        return True

    assert asyncio.run(connect({})) is False
    assert asyncio.run(connect({"Authorization": f"Bearer {KEY}"})) is True


def test_persona_image_urls_open_without_a_key(keyed):
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        made = c.post("/api/persona", json={"name": "Ada", "prompt": "a mathematician"}, headers=auth)
        assert made.status_code == 201, made.text
        url = made.json()["images"][0]["url"]
        assert c.get(url).status_code == 200  # no key: the signature is the credential
        assert c.get("/api/persona/Ada").status_code == 401


def test_seed004_websocket_takes_a_stream_token(keyed):
    import json

    import websockets

    url = keyed.url.replace("http://", "ws://") + "/"
    with httpx.Client(base_url=keyed.url) as c:
        token = c.post("/v1/stream-tokens", headers={"Authorization": f"Bearer {KEY}"}).json()["token"]

    async def subscribe(target: str) -> dict:
        async with websockets.connect(target) as ws:
            await ws.send(json.dumps({"type": "subscribe", "jobId": "nope"}))
            return json.loads(await ws.recv())

    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(subscribe(url))
    assert asyncio.run(subscribe(f"{url}?token={token}"))["type"] == "error"  # in: an unknown job's answer
