"""Seed 001's retrieval as the seed has it: indices built from example data through
``POST /v1/rag/items`` (one item, a JSON array or JSON Lines) and ``DELETE /v1/rag/items/{id}``,
searched with the seed's default ``k`` of 5. On a live daemon (the mock embeds by hashing, so an
item's own text or image finds it first)."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from tests.conftest import MOCK_CONFIG, Daemon, write_config


def png(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rag-items")
    d = Daemon(write_config(tmp / "loom.toml", MOCK_CONFIG), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def http(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        yield client


def test_one_text_item_is_embedded_stored_and_found(http):
    r = http.post("/v1/rag/items", json={"text": "Once upon a time a fox kept a lantern.", "meta": {"title": "Fox"}})
    assert r.status_code == 201, r.text
    (item,) = r.json()["data"]
    assert item["collection"] == "stories" and item["model"] == "mock-chat" and item["kind"] == "text"
    hits = http.post("/v1/rag/search", json={"text": "Once upon a time a fox kept a lantern.", "collection": "stories"})
    top = hits.json()["data"][0]
    assert top["id"] == item["id"] and top["meta"] == {"title": "Fox"} and top["job_id"] is None


def test_a_jsonl_batch_of_texts_and_images(http, daemon):
    lines = [
        {"text": "A red balloon floats over the harbour.", "collection": "examples"},
        {"image": png((200, 30, 30)), "text": "A red square, as a child drew it.", "meta": {"source": "VIST"}},
        {"image": png((30, 30, 200))},
    ]
    body = "# seed 001's examples\n" + "\n".join(json.dumps(x) for x in lines) + "\n"
    r = http.post("/v1/rag/items", content=body, headers={"content-type": "application/jsonl"})
    assert r.status_code == 201, r.text
    text, captioned, bare = r.json()["data"]
    assert text["collection"] == "examples" and text["kind"] == "text" and text["path"] is None
    for image in (captioned, bare):
        assert image["collection"] == "images" and image["kind"] == "image"
        assert image["path"].startswith("images/rag/")
        assert http.get(image["url"]).content.startswith(b"\x89PNG")
    # An image query finds the picture; the caption is kept with it.
    hits = http.post("/v1/rag/search", json={"image": png((200, 30, 30)), "collection": "images"}).json()["data"]
    assert hits[0]["id"] == captioned["id"] and hits[0]["text"] == "A red square, as a child drew it."
    assert hits[0]["meta"] == {"source": "VIST"}
    # A file the daemon already serves is pointed at, not copied.
    r = http.post("/v1/rag/items", json=[{"image": f"{daemon.url}{bare['url']}", "collection": "copies"}])
    assert r.status_code == 201 and r.json()["data"][0]["path"] == bare["path"]


def test_search_k_defaults_to_the_seeds_five(http):
    r = http.post("/v1/rag/items", json=[{"text": f"story number {i}", "collection": "many"} for i in range(8)])
    assert r.status_code == 201 and len(r.json()["data"]) == 8
    found = http.post("/v1/rag/search", json={"text": "story number 3", "collection": "many"}).json()
    assert found["query"]["k"] == 5 and len(found["data"]) == 5


def test_delete_an_item(http, daemon):
    (item,) = http.post("/v1/rag/items", json={"image": png((10, 200, 10)), "collection": "doomed"}).json()["data"]
    assert (daemon.data_dir / item["path"]).is_file()
    r = http.delete(f"/v1/rag/items/{item['id']}")
    assert r.status_code == 200 and r.json() == {"id": item["id"], "object": "rag.item", "deleted": True}
    assert not (daemon.data_dir / item["path"]).exists()
    assert http.post("/v1/rag/search", json={"image": png((10, 200, 10)), "collection": "doomed"}).json()["data"] == []
    r = http.delete(f"/v1/rag/items/{item['id']}")
    assert r.status_code == 404 and r.json()["error"]["param"] == "item_id"


@pytest.mark.parametrize(
    "body, headers, param",
    [
        ({}, {}, "text"),
        ([], {}, "items"),
        ({"text": "x", "collection": "Not Valid"}, {}, "collection"),
        ({"text": "x", "colour": "red"}, {}, "colour"),
        ({"image": "data:image/png;base64,bm90IGFuIGltYWdl"}, {}, "image"),
        ('{"text": "fine"}\n{"text": 3}\n', {"content-type": "application/x-ndjson"}, "line 2"),
        ({"text": "x", "model": "mock-image"}, {}, "model"),
    ],
)
def test_bad_items_are_refused_by_name(http, body, headers, param):
    if isinstance(body, str):
        r = http.post("/v1/rag/items", content=body, headers=headers)
    else:
        r = http.post("/v1/rag/items", json=body, headers=headers)
    assert r.status_code == 400, r.text
    assert param in (r.json()["error"]["param"] or "") or param in r.json()["error"]["message"]


def test_an_unknown_model_is_a_404(http):
    r = http.post("/v1/rag/items", json={"text": "x", "model": "no-such-model"})
    assert r.status_code == 404


def test_the_sdk_client_adds_and_deletes(daemon):
    from loom.sdk.client import LoomClient

    with LoomClient(daemon.url) as client:
        added = client.rag_add([{"text": "a heron at dawn", "collection": "sdk"}, {"text": "a crow at dusk"}])
        first, second = added["data"]
        assert first["collection"] == "sdk" and second["collection"] == "stories"
        assert client.rag_delete(first["id"])["deleted"] is True
        found = client.request("POST", "/v1/rag/search", json={"text": "a heron at dawn", "collection": "sdk"})
        assert found["data"] == []
