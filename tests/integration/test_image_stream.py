"""Streamed images with the ``openai`` package on a live daemon's mock image model.

``client.images.generate(stream=True, partial_images=k)`` and ``client.images.edit(stream=True,
...)``: each event is parsed by the package into its own type and checked against OpenAI's
published schema (``ImageGenStreamEvent`` / ``ImageEditStreamEvent``); the previews are real
PNGs of the image coming into focus, the completed image is the one an unstreamed request gets.
Bad input is a 400 in OpenAI's shape naming the field.
"""

from __future__ import annotations

import base64
import io
import re
import time

import httpx
import numpy as np
import openai
import pytest
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)
from PIL import Image

from tests.conftest import Daemon, openai_client, write_config
from tests.openai_schema import require_document, validate

SEED = {"seed": 7}


@pytest.fixture(scope="module")
def client(mock_daemon):
    return openai_client(mock_daemon)


def picture(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    assert img.format == "PNG"
    return img


def png(colour=(30, 120, 220), size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def generate(client, **kw):
    kw.setdefault("size", "64x48")
    return client.images.generate(model="mock-image", prompt="a red fox in the snow", stream=True, **kw)


def edit(client, **kw):
    kw.setdefault("size", "64x64")
    return client.images.edit(
        model="mock-image", image=("in.png", png(), "image/png"), prompt="make it night", stream=True, **kw
    )


def test_partial_images_then_the_completed_image(client):
    events = list(generate(client, partial_images=2, extra_body=SEED))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 2 + [ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    for e in events:
        assert e.size == "64x48" and e.output_format == "png" and e.created_at > 0
        assert picture(e.b64_json).size == (64, 48)
    usage = events[-1].usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    # The final image is the one the same request gets unstreamed.
    plain = client.images.generate(model="mock-image", prompt="a red fox in the snow", size="64x48", extra_body=SEED)
    assert events[-1].b64_json == plain.data[0].b64_json


def test_previews_come_into_focus(client):
    events = list(generate(client, partial_images=3, extra_body=SEED))
    final = np.asarray(picture(events[-1].b64_json).convert("RGB"), dtype=np.float64)
    errors = [np.abs(np.asarray(picture(e.b64_json).convert("RGB"), dtype=np.float64) - final).mean() for e in events]
    assert len(errors) == 4 and errors[-1] == 0
    # Each preview is closer to the final picture than the one before it.
    assert errors[0] > errors[1] > errors[2] > 0


def test_partial_images_0_sends_only_the_completed_event(client):
    events = list(generate(client, partial_images=0))
    assert len(events) == 1 and isinstance(events[0], ImageGenCompletedEvent)
    events = list(generate(client))  # partial_images left out: the same
    assert len(events) == 1 and isinstance(events[0], ImageGenCompletedEvent)


def test_fewer_steps_than_previews_send_fewer(client):
    # Two denoising steps leave one step to show before the end (OpenAI: the final image may come
    # before all the partial images).
    events = list(generate(client, partial_images=3, extra_body={"steps": 2}))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent, ImageGenCompletedEvent]


def test_events_fit_openai_schema(client):
    require_document()
    # 1024x1024: one of the sizes OpenAI's schema enumerates for the events' ``size``.
    events = list(generate(client, partial_images=2, size="1024x1024"))
    for e in events:
        validate(e.model_dump(), "ImageGenStreamEvent")
    assert events[-1].size == "1024x1024"
    edited = list(edit(client, partial_images=1, size="1024x1024"))
    assert [type(e) for e in edited] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]
    for e in edited:
        validate(e.model_dump(), "ImageEditStreamEvent")


def test_sse_wire_names_each_event(mock_daemon):
    body = {"model": "mock-image", "prompt": "a kite", "size": "32x32", "stream": True, "partial_images": 1}
    with httpx.stream("POST", f"{mock_daemon.url}/v1/images/generations", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-loom-model"] == "mock-image" and r.headers["x-loom-work-id"].startswith("wk_")
        text = r.read().decode()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("event:")]
    assert names == ["image_generation.partial_image", "image_generation.completed"]


def test_streamed_edit(client):
    events = list(edit(client, partial_images=2, extra_body={"seed": 3}))
    assert [type(e) for e in events] == [ImageEditPartialImageEvent] * 2 + [ImageEditCompletedEvent]
    assert [e.type for e in events][-1] == "image_edit.completed"
    for e in events:
        assert picture(e.b64_json).size == (64, 64)
    plain = client.images.edit(
        model="mock-image",
        image=("in.png", png(), "image/png"),
        prompt="make it night",
        size="64x64",
        extra_body={"seed": 3},
    )
    assert events[-1].b64_json == plain.data[0].b64_json


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [-1, 4])
def test_partial_images_out_of_range_is_400(client, count):
    with pytest.raises(openai.BadRequestError) as e:
        list(generate(client, partial_images=count))
    assert e.value.body["param"] == "partial_images" and e.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        list(edit(client, partial_images=count))
    assert e.value.body["param"] == "partial_images"


def test_stream_with_n_above_1_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        list(generate(client, n=2))
    assert e.value.body["param"] == "n" and "n=1" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        list(edit(client, n=2))
    assert e.value.body["param"] == "n"


def test_stream_with_url_response_format_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        list(generate(client, response_format="url"))
    assert e.value.body["param"] == "response_format"


def test_stream_flag_must_be_a_boolean_on_edits(mock_daemon):
    r = httpx.post(
        f"{mock_daemon.url}/v1/images/edits",
        files={"image": ("in.png", png(), "image/png")},
        data={"model": "mock-image", "prompt": "x", "stream": "maybe"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


def test_unknown_model_keeps_its_status(client):
    with pytest.raises(openai.NotFoundError):
        list(client.images.generate(model="no-such-model", prompt="x", stream=True, partial_images=1))


def test_provider_error_before_any_event_keeps_its_status(client):
    with pytest.raises(openai.InternalServerError) as e:
        list(client.images.generate(model="mock-broken", prompt="x", size="32x32", stream=True, partial_images=2))
    assert e.value.status_code == 502


SLOW_CONFIG = """
[daemon]
host = "127.0.0.1"

[[models]]
id = "slow-image"
provider = "mock"
capabilities = ["image"]
options = { latency_ms = 4000 }
"""


@pytest.fixture(scope="module")
def slow_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow-images")
    d = Daemon(write_config(tmp / "loom.toml", SLOW_CONFIG), tmp / "data").start()
    yield d
    d.stop()


def cancelled_items(daemon) -> float:
    text = httpx.get(f"{daemon.url}/metrics", timeout=30).text
    found = re.search(r'loom_work_items_total\{model="slow-image",outcome="cancelled"\} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


def test_a_client_that_leaves_mid_stream_cancels_the_image(slow_daemon):
    # 4 steps of 1 s; previews after steps 1, 2 and 3. Leave after the first.
    body = {"model": "slow-image", "prompt": "a kite", "size": "32x32", "stream": True, "partial_images": 3}
    before = cancelled_items(slow_daemon)
    started = time.monotonic()
    with httpx.stream("POST", f"{slow_daemon.url}/v1/images/generations", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:"):
                assert line.split(":", 1)[1].strip() == "image_generation.partial_image"
                break
    while cancelled_items(slow_daemon) == before:
        assert time.monotonic() - started < 3.5, "the image was not cancelled when its client left"
        time.sleep(0.05)


def test_an_error_after_the_first_event_is_an_error_event(slow_daemon):
    client = openai_client(slow_daemon)
    stream = client.images.generate(model="slow-image", prompt="a kite", size="32x32", stream=True, partial_images=3)
    work_id = stream.response.headers["x-loom-work-id"]
    events = iter(stream)
    assert isinstance(next(events), ImageGenPartialImageEvent)
    assert httpx.post(f"{slow_daemon.url}/admin/work/{work_id}/cancel", timeout=30).status_code == 200
    with pytest.raises(openai.APIError) as e:
        list(events)  # the status was 200: the error comes as an `error` event, in OpenAI's shape
    assert "cancelled" in e.value.message and e.value.body["type"]
