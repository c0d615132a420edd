"""Seed 001's submit-then-poll API, with the requests of its README: ``POST /generate-story``
``{"image": "data:image/png;base64,..."}`` and ``POST /generate-image`` ``{"story": ...}`` answer
``{"job_id", "status": "pending"}``; ``GET /job/{id}`` answers ``completed`` with ``result.story``
or ``result.image`` as a data URI."""

from __future__ import annotations

import base64

from loom.sdk.testing import make_png, png_size
from seed_helpers import poll


def finished(body: dict) -> bool:
    return body["status"] in ("completed", "failed")


def test_image_to_story_then_poll(client):
    image = "data:image/png;base64," + base64.b64encode(make_png(32, 24)).decode()
    r = client.post("/generate-story", json={"image": image})
    assert r.status_code == 200, r.text
    submitted = r.json()
    assert submitted["status"] == "pending" and set(submitted) == {"job_id", "status"}
    job = poll(lambda: client.get(f"/job/{submitted['job_id']}").json(), finished)
    assert job["status"] == "completed", job
    assert job["job_id"] == submitted["job_id"]
    assert isinstance(job["result"]["story"], str) and job["result"]["story"].strip()


def test_story_to_image_answers_a_data_uri(client):
    r = client.post("/generate-image", json={"story": "A magical forest at sunset..."})
    assert r.status_code == 200, r.text
    job = poll(lambda: client.get(f"/job/{r.json()['job_id']}").json(), finished)
    assert job["status"] == "completed", job
    uri = job["result"]["image"]
    assert uri.startswith("data:image/png;base64,")
    assert png_size(base64.b64decode(uri.split(",", 1)[1])) == (512, 512)


def test_pending_while_running_and_unknown_job_404(client):
    r = client.post("/generate-image", json={"story": "A lighthouse keeper's cat."})
    first = client.get(f"/job/{r.json()['job_id']}").json()
    assert first["status"] in ("pending", "completed")
    missing = client.get("/job/no-such-job")
    assert missing.status_code == 404 and missing.json() == {"detail": "Job not found"}


def test_missing_field_is_fastapis_422(client):
    r = client.post("/generate-story", json={"picture": "x"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "image"] and r.json()["detail"][0]["type"] == "missing"
    bad = client.post("/generate-story", json={"image": "not an image"})
    assert bad.status_code == 422, bad.text
