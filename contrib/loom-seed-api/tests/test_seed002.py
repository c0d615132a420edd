"""Seed 002's Django AJAX flow: ``POST /generate/`` with the story prompt, poll
``/status/{session_id}/`` every so often (the seed's ``pollGenerationStatus`` reads ``progress``,
``status`` and, once ``completed``, ``story_id``), then open ``/story/{story_id}/``."""

from __future__ import annotations

from loom.sdk.testing import png_size
from seed_helpers import poll

STATUSES = {"pending", "generating_story", "generating_images", "completed", "failed"}


def test_generate_poll_and_read_the_story(client):
    r = client.post("/generate/", data={"prompt": "A brave turtle crosses a desert"})  # jQuery's form post
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["success"] is True and started["status"] == "pending"
    seen: list[tuple[str, int]] = []

    def fetch():
        body = client.get(f"/status/{started['session_id']}/").json()
        assert body["status"] in STATUSES and isinstance(body["progress"], int), body
        seen.append((body["status"], body["progress"]))
        return body

    final = poll(fetch, lambda b: b["status"] in ("completed", "failed"), every=0.05)
    assert final["status"] == "completed" and final["progress"] == 100, final
    percents = [p for _, p in seen]
    assert percents == sorted(percents), seen  # progress only goes up
    page = client.get(f"/story/{final['story_id']}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    story = client.get(f"/story/{final['story_id']}/", headers={"Accept": "application/json"}).json()
    assert story["story_text"] and story["character_description"] and story["background_description"]
    assert story["prompt"] == "A brave turtle crosses a desert"
    kinds = {i["image_type"]: i["image_file"] for i in story["images"]}
    assert set(kinds) == {"character", "background", "combined"}
    assert kinds["combined"] in page.text
    combined = client.get(kinds["combined"])
    assert combined.status_code == 200 and png_size(combined.content) == (512, 512)


def test_json_body_works_too_and_an_empty_prompt_is_refused(client):
    r = client.post("/generate/", json={"prompt": "A kite that wanted to be a bird"})
    assert r.status_code == 200 and r.json()["success"] is True
    empty = client.post("/generate/", data={"prompt": "  "})
    assert empty.status_code == 400 and empty.json()["success"] is False


def test_unknown_session_and_story(client):
    assert client.get("/status/nope/").status_code == 404
    assert client.get("/story/nope/").status_code == 404
