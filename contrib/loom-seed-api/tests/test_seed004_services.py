"""Seed 004's local Python services as its Node orchestrator calls them: the Flux service's
``POST /generate {prompt, height, width, steps}`` -> ``{localPath}`` and the vision service's
``POST /evaluate {image_path, prompt}`` -> ``{clip_score, aesthetic_score}`` (under the
``/flux`` and ``/vision`` prefixes the orchestrator's service URLs point at)."""

from __future__ import annotations

from pathlib import Path

from loom.sdk.testing import png_size


def test_generate_then_evaluate_by_local_path(client):
    r = client.post("/flux/generate", json={"prompt": "a red fox", "height": 256, "width": 320, "steps": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    path = Path(body["localPath"])
    assert path.is_absolute() and png_size(path.read_bytes()) == (320, 256)
    assert body["metadata"]["prompt"] == "a red fox" and body["metadata"]["steps"] == 4
    scored = client.post("/vision/evaluate", json={"image_path": body["localPath"], "prompt": "a red fox"})
    assert scored.status_code == 200, scored.text
    s = scored.json()
    assert set(s) == {"clip_score", "aesthetic_score"}
    assert 0.0 <= s["clip_score"] <= 1.0 and 0.0 <= s["aesthetic_score"] <= 10.0
    analyzed = client.post("/vision/analyze", json={"imagePath": body["localPath"], "prompt": "a red fox"}).json()
    assert 0 <= analyzed["alignmentScore"] <= 100 and analyzed["analysis"]


def test_fastapi_errors(client):
    missing = client.post("/flux/generate", json={"height": 256})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "prompt"]
    typed = client.post("/flux/generate", json={"prompt": "x", "steps": "many"})
    assert typed.status_code == 422 and typed.json()["detail"][0]["type"] == "int_type"
    outside = client.post("/vision/evaluate", json={"image_path": "/etc/passwd", "prompt": "x"})
    assert outside.status_code == 404 and "detail" in outside.json()


def test_health(client):
    assert client.get("/flux/health").json()["status"] == "healthy"
    assert client.get("/vision/health").json()["models"] == ["mock-vision"]
