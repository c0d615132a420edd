"""Seed 003's persona flow: create a persona (name, descriptive prompt, motto tone), add a second
image under the same name (the upsert), and look it up with short-lived image URLs an ``<img>``
tag can open (valid, tampered, expired)."""

from __future__ import annotations

import time

from loom.sdk.testing import png_size


def test_create_add_and_lookup(client):
    first = client.post(
        "/api/persona", json={"name": "Captain Nova", "prompt": "a starship captain", "motto_tone": "wise"}
    )
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["name"] == "Captain Nova" and created["motto_tone"] == "wise" and created["motto"]
    assert len(created["images"]) == 1
    second = client.post(
        "/api/persona", json={"name": "captain  nova", "prompt": "in dress uniform", "motto_tone": "humorous"}
    )
    assert second.status_code == 200, second.text
    assert len(second.json()["images"]) == 2 and len(second.json()["mottos"]) == 2

    found = client.get("/api/persona/Captain Nova").json()
    assert found["name"] == "Captain Nova" and len(found["images"]) == 2
    url = found["images"][0]["url"]
    assert url.startswith("/api/persona-image/") and "exp=" in url and "sig=" in url
    image = client.get(url)
    assert image.status_code == 200 and png_size(image.content) == (512, 512)
    expires = int(url.split("exp=")[1].split("&")[0])
    assert 55 <= expires - time.time() <= 61  # the seed's 60 seconds
    tampered = client.get(url.replace("sig=", "sig=0"))
    assert tampered.status_code == 403
    expired = url.replace(f"exp={expires}", f"exp={int(time.time()) - 1}")
    assert client.get(expired).status_code == 403


def test_unknown_persona_and_missing_fields(client):
    assert client.get("/api/persona/Nobody").status_code == 404
    r = client.post("/api/persona", json={"name": "X"})
    assert r.status_code == 400 and r.json() == {"error": "Missing required field: prompt"}
