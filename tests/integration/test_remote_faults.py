"""Fault injection: a small HTTP server of the test's own misbehaves on purpose (5xx, 429 with
Retry-After, hangs past the timeout, connections dropped mid-stream, errors quoting the key) in
front of a live Loom. The client always gets a clear error or a completed fallback, and the daemon
keeps serving."""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import Daemon, free_port, openai_client, write_config

FAULT_KEY = "sk-fault-Secret0123456789abcdef"
HELLO = [{"role": "user", "content": "hello"}]
WORDS = ["Hello", " from", " the", " fault", " server", "."]


class FaultServer:
    """Speaks just enough HTTP/1.1 and OpenAI to be an upstream; the model name picks the fault."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.hits: collections.Counter[str] = collections.Counter()
        self.auth: list[str | None] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.auth.append(headers.get("authorization"))
                if not await self._answer(method, path, json.loads(body) if body else {}, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str, req: dict, w: asyncio.StreamWriter) -> bool:
        """Write one answer; False when the connection was dropped on purpose."""
        if method == "GET" and path.endswith("/models"):
            return _json(w, 200, {"object": "list", "data": [{"id": m} for m in ("ok", "fail500", "hang")]})
        model = req.get("model", "")
        self.hits[model] += 1
        stream = req.get("stream", False)
        if model == "fail500" or (model == "flaky" and self.hits[model] % 2 == 1):
            return _json(w, 500, {"error": {"message": "upstream exploded", "type": "server_error"}})
        if model == "ratelimit":
            return _json(w, 429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})
        if model == "leaky":
            quoted = f"your key {self.auth[-1]} is not allowed here ({FAULT_KEY[:10]}***{FAULT_KEY[-4:]})"
            return _json(w, 400, {"error": {"message": quoted, "type": "invalid_request_error"}})
        if model == "hang":
            await asyncio.sleep(30)
            return False
        if model == "drop-early":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            await w.drain()
            w.transport.abort()
            return False
        if not stream:
            if model == "drop":
                w.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"id"')
                await w.drain()
                w.transport.abort()
                return False
            text = "".join(WORDS)
            return _json(
                w,
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(WORDS), "total_tokens": 1 + len(WORDS)},
                },
            )
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i, word in enumerate(WORDS):
            if model == "drop" and i == 2:
                await w.drain()
                await asyncio.sleep(0.05)
                w.transport.abort()  # mid-stream: no terminating chunk, no [DONE]
                return False
            _chunk(
                w,
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                },
            )
            await w.drain()
        _chunk(
            w,
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        )
        w.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await w.drain()
        return True


def _json(w: asyncio.StreamWriter, status: int, body: dict, headers: dict | None = None) -> bool:
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    w.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}\r\n".encode()
        + data
    )
    return True


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _chunk(w: asyncio.StreamWriter, event: dict) -> None:
    w.write(_chunked(f"data: {json.dumps(event)}\n\n".encode()))


FRONT = """
[daemon]
host = "127.0.0.1"

[plugins.openai.instances.faulty]
base_url = "{url}"
api_key = {{ env = "T_FAULT_KEY" }}
timeout = 1
retries = 1

[[models]]
id = "local-chat"
provider = "mock"
capabilities = ["chat"]
"""

MODELS = {
    "f-ok": ("ok", None),
    "f-500": ("fail500", None),
    "f-500-fb": ("fail500", "local-chat"),
    "f-flaky": ("flaky", None),
    "f-429": ("ratelimit", None),
    "f-429-fb": ("ratelimit", "local-chat"),
    "f-hang": ("hang", None),
    "f-hang-fb": ("hang", "local-chat"),
    "f-drop": ("drop", None),
    "f-drop-early-fb": ("drop-early", "local-chat"),
    "f-leaky": ("leaky", None),
}


@pytest.fixture(scope="module")
def faults():
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(faults, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    config = FRONT.format(url=faults.url)
    for id_, (model, fallback) in MODELS.items():
        config += f'\n[[models]]\nid = "{id_}"\nprovider = "openai"\noptions = {{ model = "{model}" }}\n'
        config += 'capabilities = ["chat"]\n' + (f'fallbacks = ["{fallback}"]\n' if fallback else "")
    d = Daemon(write_config(tmp / "front.toml", config), tmp / "data", env={"T_FAULT_KEY": FAULT_KEY}).start()
    yield d
    d.stop()
    assert FAULT_KEY not in d.output() and FAULT_KEY[:10] not in d.output()


@pytest.fixture(scope="module")
def client(front):
    return openai_client(front, timeout=30)


@pytest.fixture(autouse=True)
def daemon_keeps_serving(client):
    yield
    r = client.chat.completions.with_raw_response.create(model="f-ok", messages=HELLO)
    assert r.parse().choices[0].message.content == "".join(WORDS)


def served(raw) -> str:
    return raw.headers["x-loom-model"]


def test_the_key_reaches_the_service_and_nothing_else_does(client, faults):
    client.chat.completions.create(model="f-ok", messages=HELLO)
    assert faults.auth[-1] == f"Bearer {FAULT_KEY}"


def test_5xx_is_tried_again_then_a_502(client, faults):
    before = faults.hits["fail500"]
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="f-500", messages=HELLO)
    assert e.value.status_code == 502 and "500" in e.value.message and "upstream exploded" in e.value.message
    assert faults.hits["fail500"] - before == 2  # retries = 1


def test_a_5xx_that_passes_is_invisible(client):
    for _ in range(2):
        r = client.chat.completions.create(model="f-flaky", messages=HELLO)
        assert r.choices[0].message.content == "".join(WORDS)


def test_5xx_falls_back_when_there_is_a_fallback(client):
    raw = client.chat.completions.with_raw_response.create(model="f-500-fb", messages=HELLO)
    assert served(raw) == "local-chat" and raw.parse().choices[0].message.content


def test_429_keeps_retry_after_and_is_not_retried(client, faults):
    before = faults.hits["ratelimit"]
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="f-429", messages=HELLO)
    assert e.value.response.headers["retry-after"] == "7" and "slow down" in e.value.message
    assert faults.hits["ratelimit"] - before == 1
    raw = client.chat.completions.with_raw_response.create(model="f-429-fb", messages=HELLO)
    assert served(raw) == "local-chat"


def test_a_hang_past_the_timeout_is_a_504_after_the_retries(client):
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="f-hang", messages=HELLO)
    took = time.monotonic() - start
    assert e.value.status_code == 504 and "within 1s" in e.value.message and "after 2 tries" in e.value.message
    assert 2 <= took < 6


def test_a_hang_falls_back(client):
    raw = client.chat.completions.with_raw_response.create(model="f-hang-fb", messages=HELLO, stream=True)
    assert served(raw) == "local-chat"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


def test_a_stream_dropped_midway_ends_with_a_clear_error(client):
    stream = client.chat.completions.create(model="f-drop", messages=HELLO, stream=True)
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got += [c.delta.content for c in chunk.choices if c.delta.content]
    assert got == WORDS[:2]  # what came before the drop was passed on as it came
    assert "Lost the connection" in e.value.message and "f-drop" in e.value.message


def test_a_plain_answer_dropped_midway_is_a_502(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="f-drop", messages=HELLO)
    assert e.value.status_code == 502


def test_a_stream_dropped_before_the_first_token_falls_back(client):
    raw = client.chat.completions.with_raw_response.create(model="f-drop-early-fb", messages=HELLO, stream=True)
    assert served(raw) == "local-chat"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


def test_an_error_quoting_the_key_is_passed_on_without_it(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="f-leaky", messages=HELLO)
    text = e.value.response.text
    assert "is not allowed here" in text
    assert FAULT_KEY not in text and FAULT_KEY[:10] not in text and FAULT_KEY[-4:] + ")" not in text


def test_health_sees_the_fault_server(front):
    body = httpx.post(f"{front.url}/admin/providers/check", timeout=30).json()
    (faulty,) = body["upstreams"]
    assert faulty["status"] == "ok"
    listed = {m["id"]: m["listed"] for m in faulty["models"]}
    assert listed["f-ok"] is True and listed["f-leaky"] is False
    assert FAULT_KEY not in json.dumps(body)
