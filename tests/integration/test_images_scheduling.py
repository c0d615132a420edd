"""n-image requests through a live daemon (mock models with latency, the ``openai`` client, the
scheduler's events over SSE): a chat request sent while the first of three images is being made
starts before the second, and a seeded n-image request gives the images of n one-image requests
with consecutive seeds. Order comes from the scheduler's ``started`` events, not from clocks."""

from __future__ import annotations

import base64
import threading

import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.events_support import SchedulerEvents

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


def test_chat_waits_for_at_most_one_image(daemon):
    client = openai_client(daemon)
    events = SchedulerEvents(daemon.url)
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
        events.wait_for(1, "started")
        assert events.started() == [("mock-image", "interactive")]
        reply = client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        images.join(60)
        assert len(result[0].data) == 3
        events.wait_for(4, "started")
        assert events.started() == [
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
