"""Streamed images through a remote provider: a front Loom whose image models live on an upstream
Loom (the mock), spoken to with the ``openai`` package. With ``stream_images`` the front asks the
upstream for a streamed image and passes its partial images through as its own; without, the
upstream is asked for the final image only and the front's stream is the completed event alone."""

from __future__ import annotations

import base64

import pytest
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.test_image_stream import png

FRONT_CONFIG = """
[daemon]
host = "127.0.0.1"

[plugins.openai.instances.up]
base_url = "{up}/v1"
timeout = 30
retries = 0

[[models]]
id = "remote-image-streamed"
provider = "openai"
capabilities = ["image"]
options = {{ model = "mock-image", stream_images = true }}

[[models]]
id = "remote-image"
provider = "openai"
capabilities = ["image"]
options = {{ model = "mock-image" }}
"""


@pytest.fixture(scope="module")
def front(mock_daemon, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front-images")
    d = Daemon(write_config(tmp / "loom.toml", FRONT_CONFIG.format(up=mock_daemon.url)), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def clients(front, mock_daemon):
    return openai_client(front), openai_client(mock_daemon)


ARGS = {"prompt": "a blue whale", "size": "64x64", "extra_body": {"seed": 4}}


def test_the_upstreams_partial_images_pass_through(clients):
    client, upstream = clients
    events = list(client.images.generate(model="remote-image-streamed", stream=True, partial_images=2, **ARGS))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 2 + [ImageGenCompletedEvent]
    direct = list(upstream.images.generate(model="mock-image", stream=True, partial_images=2, **ARGS))
    # The same pictures the upstream streams itself, previews included.
    assert [e.b64_json for e in events] == [e.b64_json for e in direct]
    assert base64.b64decode(events[-1].b64_json).startswith(b"\x89PNG")


def test_a_streamed_edit_passes_through(clients):
    client, _ = clients
    events = list(
        client.images.edit(
            model="remote-image-streamed",
            image=("in.png", png(), "image/png"),
            prompt="at night",
            size="64x64",
            stream=True,
            partial_images=1,
        )
    )
    assert [type(e) for e in events] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]


def test_without_stream_images_only_the_final_image(clients):
    client, upstream = clients
    events = list(client.images.generate(model="remote-image", stream=True, partial_images=2, **ARGS))
    assert [type(e) for e in events] == [ImageGenCompletedEvent]
    plain = upstream.images.generate(model="mock-image", **ARGS)
    assert events[0].b64_json == plain.data[0].b64_json
