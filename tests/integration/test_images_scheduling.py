"""n-image requests through a live daemon (mock models with latency, the ``openai`` client, the
scheduler's events over SSE): a chat request sent while the first of three images is being made
starts before the second, and a seeded n-image request gives the images of n one-image requests
with consecutive seeds. Order comes from the scheduler's ``started`` events, not from clocks."""

from __future__ import annotations

import base64
import json
import threading

import httpx
import pytest

from tests.conftest import Daemon, openai_client, write_config

CONFIG = """
[daemon]
host = "127.0.0.1"

[[models]]
id = "mock-image"
provider = "mock"
capabilities = ["image"]
options = { latency_ms = 600 }

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


class Events:
    """``GET /admin/events`` read on a thread: the ``started`` events, as (model, priority)."""

    def __init__(self, url: str) -> None:
        self.started: list[tuple[str, str]] = []
        self.changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._subscribed.wait(10)

    def _read(self) -> None:
        try:
            self._follow()
        except httpx.HTTPError:  # close() ends the stream under the reader
            pass

    def _follow(self) -> None:
        with self._client.stream("GET", "/admin/events") as r:
            kind = None
            for line in r.iter_lines():
                if line.startswith(":"):
                    self._subscribed.set()
                elif line.startswith("event:"):
                    kind = line.partition(":")[2].strip()
                elif line.startswith("data:") and kind == "started":
                    event = json.loads(line.partition(":")[2])
                    with self.changed:
                        self.started.append((event["model"], event["priority"]))
                        self.changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, str]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.started) >= count, timeout=60), self.started
            return list(self.started)

    def close(self) -> None:
        self._client.close()


def test_chat_waits_for_at_most_one_image(daemon):
    client = openai_client(daemon)
    events = Events(daemon.url)
    try:
        result: list = []
        images = threading.Thread(
            target=lambda: result.append(
                client.images.generate(
                    model="mock-image", prompt="a lighthouse", size="64x64", n=3, response_format="b64_json"
                )
            )
        )
        images.start()
        assert events.wait_for(1) == [("mock-image", "interactive")]
        reply = client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        images.join(60)
        assert len(result[0].data) == 3
        assert events.wait_for(4) == [
            ("mock-image", "interactive"),
            ("mock-chat", "interactive"),  # right after the first image, before the other two
            ("mock-image", "pipeline"),
            ("mock-image", "pipeline"),
        ]
    finally:
        events.close()


def test_a_seeded_request_gives_the_images_of_consecutive_seeds(daemon):
    client = openai_client(daemon)

    def pngs(n: int, seed: int) -> list[bytes]:
        r = client.images.generate(
            model="mock-image", prompt="a fox", size="64x64", n=n, response_format="b64_json", extra_body={"seed": seed}
        )
        return [base64.b64decode(d.b64_json) for d in r.data]

    together = pngs(3, 40)
    assert len(set(together)) == 3
    assert together == [pngs(1, 40 + i)[0] for i in range(3)]
