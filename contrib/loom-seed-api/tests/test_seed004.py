"""Seed 004's demo server on Loom, with the requests its demo.js makes: ``POST /api/beam-search``
(the key rule when an OpenAI provider is active), the WebSocket at ``/`` (``subscribe`` ->
``subscribed``, then ``started``, ``candidate`` with ``imageUrl``, ``iteration``, ``complete``),
``GET /api/images/...``, ``/api/jobs``, and the provider status and switch."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from loom.sdk.testing import png_size

SMALL = {"prompt": "a lighthouse in a storm", "n": 2, "m": 1, "iterations": 2, "alpha": 0.7, "temperature": 0.7}


def ws_url(loom) -> str:
    return loom.url.replace("http://", "ws://") + "/"


async def messages_until_complete(loom, job_id: str, timeout: float = 60.0) -> list[dict]:
    got: list[dict] = []
    async with websockets.connect(ws_url(loom)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "jobId": job_id}))
        async with asyncio.timeout(timeout):
            while True:
                got.append(json.loads(await ws.recv()))
                if got[-1]["type"] in ("complete", "error", "cancelled"):
                    return got


def test_beam_search_over_the_websocket(loom, client):
    r = client.post("/api/beam-search", json=SMALL)
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["status"] == "started" and started["params"]["prompt"] == SMALL["prompt"]
    messages = asyncio.run(messages_until_complete(loom, started["jobId"]))
    types = [m["type"] for m in messages]
    assert types[0] == "subscribed" and messages[0]["jobId"] == started["jobId"]
    assert "started" in types and types[-1] == "complete", types
    assert types.index("started") < types.index("candidate") < types.index("iteration")
    candidates = [m for m in messages if m["type"] == "candidate"]
    assert {(c["iteration"], c["candidateId"]) for c in candidates} >= {(0, 0), (0, 1), (1, 0), (1, 1)}
    for c in candidates:
        assert c["imageUrl"].startswith("/api/images/ses-") and c["whatPrompt"] and c["howPrompt"]
        assert isinstance(c["timestamp"], str) and c["timestamp"].endswith("Z")
    best0 = next(m["candidateId"] for m in messages if m["type"] == "ranked" and m["iteration"] == 0 and m["rank"] == 1)
    assert {c["parentId"] for c in candidates if c["iteration"] == 1} == {best0}  # m = 1: one parent
    steps = {(m["candidateId"], m["stage"]) for m in messages if m["type"] == "step"}
    assert {("i0c0", "expand"), ("i0c0", "combine"), ("i0c0", "imageGen"), ("i0c0", "vision")} <= steps
    assert ("i1c0", "refine") in steps
    iterations = [m for m in messages if m["type"] == "iteration"]
    assert [m["iteration"] for m in iterations] == [0, 1] and iterations[0]["totalIterations"] == 2
    done = messages[-1]
    best = done["result"]["bestCandidate"]
    assert best["combined"] and isinstance(best["totalScore"], float)
    image = client.get(best["imageUrl"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert png_size(image.content) == (512, 512)
    meta = done["metadata"]
    assert meta["userPrompt"] == SMALL["prompt"] and meta["sessionId"] == best["imageUrl"].split("/")[3]
    assert meta["lineage"][-1] == {
        "iteration": meta["finalWinner"]["iteration"],
        "candidateId": meta["finalWinner"]["candidateId"],
    }
    assert len(meta["allGlobalRanked"]) >= 2

    # The job browser lists the session; its metadata and status are there.
    sessions = client.get("/api/jobs").json()["sessions"]
    mine = next(s for s in sessions if s["sessionId"] == meta["sessionId"])
    assert mine["userPrompt"] == SMALL["prompt"] and mine["config"]["beamWidth"] == 2
    assert mine["iterationCount"] == 2 and mine["finalWinner"]["candidateId"] == meta["finalWinner"]["candidateId"]
    detail = client.get(f"/api/jobs/{meta['sessionId']}").json()
    assert detail["sessionId"] == meta["sessionId"] and detail["metadata"]["userPrompt"] == SMALL["prompt"]
    assert client.get(f"/api/job/{started['jobId']}").json()["status"] == "completed"

    # Subscribing to a finished job is refused as the seed refused it, and the socket closes.
    async def late() -> tuple[dict, int]:
        async with websockets.connect(ws_url(loom)) as ws:
            await ws.send(json.dumps({"type": "subscribe", "jobId": started["jobId"]}))
            first = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return first, closed.value.rcvd.code

    first, code = asyncio.run(late())
    assert first["type"] == "error" and "already completed" in first["message"] and code == 1000


def test_unknown_job_subscription_and_images(loom, client):
    async def unknown() -> dict:
        async with websockets.connect(ws_url(loom)) as ws:
            await ws.send("not json")  # ignored, as the seed's server ignored it
            await ws.send(json.dumps({"type": "ping"}))
            await ws.send(json.dumps({"type": "subscribe", "jobId": "nope"}))
            return json.loads(await ws.recv())

    assert asyncio.run(unknown())["type"] == "error"
    assert client.get("/api/images/ses-1/x.png").json() == {"error": "Invalid session ID"}
    assert client.get("/api/images/ses-123456/x.txt").json() == {"error": "Only PNG files are allowed"}
    missing = client.get("/api/images/ses-123456-nojob/x.png")
    assert missing.status_code == 404 and missing.json()["error"] == "Image not found"
    assert client.get("/api/job/nope").status_code == 404


def test_prompt_is_required(client):
    r = client.post("/api/beam-search", json={"n": 2})
    assert r.status_code == 400 and r.json() == {"error": "Missing required parameter: prompt"}
    bad = client.post("/api/beam-search", json={**SMALL, "m": 5})
    assert bad.status_code == 400 and "keep_top" in bad.json()["error"]


def test_provider_status_switch_and_key_rule(loom, client):
    status = client.get("/api/providers/status").json()
    assert status["active"] == {"llm": "local-llm", "image": "flux", "vision": "local"}
    assert status["available"]["llm"] == ["openai", "local-llm"]
    assert status["health"]["localLLM"]["available"] is True and status["health"]["flux"]["model"] == "mock-image"
    # Local providers: no key is needed.
    assert client.post("/api/beam-search", json={**SMALL, "iterations": 1}).status_code == 200

    bad = client.post("/api/providers/switch", json={"llm": "gpt"})
    assert bad.status_code == 400 and bad.json() == {"error": "Invalid LLM provider", "valid": ["openai", "local-llm"]}
    switched = client.post("/api/providers/switch", json={"llm": "openai"})
    assert switched.status_code == 200, switched.text
    assert switched.json()["success"] is True and switched.json()["active"]["llm"] == "openai"
    try:
        missing = client.post("/api/beam-search", json=SMALL)
        assert missing.status_code == 401 and "Missing API key" in missing.json()["error"]
        malformed = client.post("/api/beam-search", json=SMALL, headers={"X-OpenAI-API-Key": "abc"})
        assert malformed.status_code == 400
        assert malformed.json() == {"error": "Invalid API key format. Should start with sk-"}
        ok = client.post("/api/beam-search", json={**SMALL, "iterations": 1}, headers={"X-OpenAI-API-Key": "sk-test"})
        assert ok.status_code == 200 and ok.json()["status"] == "started"
        messages = asyncio.run(messages_until_complete(loom, ok.json()["jobId"]))
        started = next(m for m in messages if m["type"] == "started")
        assert started["providers"]["llm"] == "openai" and messages[-1]["type"] == "complete"
    finally:
        client.post("/api/providers/switch", json={"llm": "local-llm"})
    assert client.get("/api/providers/status").json()["active"]["llm"] == "local-llm"


def test_cancel_sends_cancelled(loom, client):
    r = client.post("/api/beam-search", json={**SMALL, "n": 4, "m": 2, "iterations": 10})
    job_id = r.json()["jobId"]

    async def run() -> list[dict]:
        async with websockets.connect(ws_url(loom)) as ws:
            await ws.send(json.dumps({"type": "subscribe", "jobId": job_id}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            cancelled = await asyncio.to_thread(client.post, f"/api/jobs/{job_id}/cancel")
            assert cancelled.json() == {
                "jobId": job_id,
                "status": "cancelling",
                "message": "Job cancellation in progress",
            }
            got = []
            async with asyncio.timeout(30):
                while not got or got[-1]["type"] not in ("cancelled", "complete", "error"):
                    got.append(json.loads(await ws.recv()))
            return got

    assert asyncio.run(run())[-1]["type"] == "cancelled"
    again = client.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 400


def test_the_demo_pages_other_calls(loom, client):
    models = client.get("/api/available-models").json()
    assert models["llm"]["default"] == "mock-chat" and "mock-chat" in models["llm"]["options"]
    assert models["imageGen"]["options"] == ["mock-image"] and models["vision"]["default"] == "mock-vision"
    health = client.get("/api/providers/health").json()
    assert health["flux"]["available"] is True and health["timestamp"].endswith("Z")
    installed = client.get("/api/providers/models/status").json()
    assert installed["flux"] == {"installed": True, "modelPath": "mock-image"}
    # The Stop button: POST /api/demo/cancel/{jobId}
    job_id = client.post("/api/beam-search", json={**SMALL, "n": 4, "m": 2, "iterations": 10}).json()["jobId"]
    stopped = client.post(f"/api/demo/cancel/{job_id}")
    assert stopped.status_code == 200 and stopped.json()["success"] is True
    again = client.post(f"/api/demo/cancel/{job_id}")
    assert again.status_code == 404 and again.json()["error"] == "Job not found or already complete"
