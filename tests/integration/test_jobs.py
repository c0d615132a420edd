"""The job API over HTTP on a live daemon: validation, 202, listing, events (SSE and WebSocket),
cancel, a provider failure, files. Beam search on the mock providers is the vehicle."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import beam_config, capability_of, small, sse_events, start, wait


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    d = Daemon(write_config(tmp / "loom.toml", beam_config()), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        yield c


# --- pipelines and validation -----------------------------------------------------------------


def test_pipelines_are_listed_with_the_schema_of_their_params(client):
    r = client.get("/v1/pipelines")
    assert r.status_code == 200
    pipelines = {p["name"]: p for p in r.json()["data"]}
    beam = pipelines["beam_search"]
    assert beam["plugin"] == "beam_search"
    schema = beam["params_schema"]
    props = schema["$defs"]["BeamSearchParams"]["properties"]
    assert {
        "prompt",
        "beam_width",
        "keep_top",
        "iterations",
        "alpha",
        "width",
        "height",
        "steps",
        "llm_model",
        "image_model",
        "vision_model",
    } <= set(props)
    assert schema["$defs"]["BeamSearchParams"]["required"] == ["prompt"]


def test_an_unknown_field_is_a_400_naming_it(client):
    r = client.post("/v1/pipelines/beam_search", json={"prompt": "x", "beam_wdth": 3})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "beam_wdth" and "beam_wdth" in error["message"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": "x", "width": 100}, "width"),
        ({"prompt": "x", "alpha": 1.5}, "alpha"),
        ({"beam_width": 2}, None),  # missing prompt
        ({"prompt": "x", "beam_width": 2, "keep_top": 3}, None),  # M > N
    ],
)
def test_invalid_params_are_a_400(client, body, param):
    r = client.post("/v1/pipelines/beam_search", json=body)
    assert r.status_code == 400, r.text
    if param:
        assert r.json()["error"]["param"] == param


def test_malformed_json_and_unknown_pipeline(client):
    assert client.post("/v1/pipelines/beam_search", content=b"{not json").status_code == 400
    r = client.post("/v1/pipelines/nope", json={})
    assert r.status_code == 404 and "beam_search" in r.json()["error"]["message"]
    assert client.get("/v1/jobs/doesnotexist").status_code == 404


# --- a job's life ------------------------------------------------------------------------------


def test_a_job_is_accepted_with_202_and_runs_to_success(client):
    r = client.post("/v1/pipelines/beam_search", json=small(iterations=2))
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] in ("queued", "running") and job["object"] == "job"
    assert re.fullmatch(rf"output/\d{{4}}-\d{{2}}-\d{{2}}/ses-\d{{6}}-{job['id']}", job["output_dir"])

    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["progress"] == 100 and done["stage"] == "done" and done["error"] is None
    assert done["attempts"] == 1 and done["finished_at"] >= done["started_at"] >= done["created_at"]
    t = done["timings"]
    assert t["steps"] > 0 and t["run_seconds"] > 0 and t["elapsed_seconds"] >= t["run_seconds"] * 0.5
    assert {"chat", "image", "vision"} <= set(t["by_capability"])
    u = done["usage"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert done["result"]["winner"]["id"]
    pngs = [a for a in done["artifacts"] if a["media_type"] == "image/png"]
    assert len(pngs) == 8  # N=4 candidates x 2 iterations
    assert all(a["bytes"] > 0 and len(a["sha256"]) == 64 for a in pngs)


def test_jobs_are_listed_and_filtered(client):
    a = start(client, small(iterations=1))
    wait(client, a["id"])
    t_mid = time.time()
    time.sleep(0.05)
    b = start(client, small(iterations=1, image_model="bs-broken-image"))
    wait(client, b["id"])

    def ids(**params):
        r = client.get("/v1/jobs", params=params)
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["data"]]

    assert a["id"] in ids(state="succeeded") and b["id"] not in ids(state="succeeded")
    assert b["id"] in ids(state="failed") and b["id"] in ids(state="failed,succeeded")
    assert a["id"] in ids(pipeline="beam_search") and ids(pipeline="nope") == []
    assert b["id"] in ids(since=t_mid) and a["id"] not in ids(since=t_mid)
    assert a["id"] in ids(until=t_mid) and b["id"] not in ids(until=t_mid)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_mid - 1)) + "Z"
    assert b["id"] in ids(since=iso)
    first = client.get("/v1/jobs", params={"limit": 1}).json()
    assert len(first["data"]) == 1 and first["has_more"] is True
    assert client.get("/v1/jobs", params={"state": "sleeping"}).status_code == 400
    assert client.get("/v1/jobs", params={"since": "yesterday"}).status_code == 400


# --- events ------------------------------------------------------------------------------------


def test_events_arrive_in_order_and_resume_after_a_reconnect(client, daemon):
    job = start(client, small(iterations=2, image_model="bs-slow-image"))
    url = f"/v1/jobs/{job['id']}/events"
    first: list[dict] = []
    with client.stream("GET", url) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(r):
            first.append(event)
            if len(first) == 12:
                break  # drop the connection mid-job
    assert wait(client, job["id"], states={"running", "succeeded"})["state"] in ("running", "succeeded")

    rest: list[dict] = []
    with client.stream("GET", url, headers={"Last-Event-ID": str(first[-1]["id"])}) as r:
        rest = list(sse_events(r))  # the stream ends after the final state event
    events = first + rest
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))  # no gap, no repeat
    assert all(e["data"]["id"] == e["id"] and e["data"]["type"] == e["event"] for e in events)
    assert events[-1]["event"] == "state" and events[-1]["data"]["data"]["state"] == "succeeded"
    assert events[0]["data"]["data"]["state"] == "queued"

    # A fresh stream of the finished job replays exactly the same events and ends.
    with client.stream("GET", url) as r:
        replay = list(sse_events(r))
    assert [(e["id"], e["event"]) for e in replay] == [(e["id"], e["event"]) for e in events]
    # ?after= works like the header.
    with client.stream("GET", url, params={"after": len(events) - 2}) as r:
        assert [e["id"] for e in sse_events(r)] == [len(events) - 1, len(events)]
    progress = [e["data"]["data"]["progress"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100


def test_websocket_follows_several_jobs(client, daemon):
    from websockets.sync.client import connect

    a = start(client, small(iterations=1))
    b = start(client, small(iterations=2, seed=8))
    ws_url = daemon.url.replace("http://", "ws://") + "/v1/ws"
    seen: dict[str, list[dict]] = {a["id"]: [], b["id"]: []}
    finished: set[str] = set()
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"op": "subscribe", "jobs": [a["id"], b["id"], "nope"]}))
        ws.send(json.dumps({"op": "ping"}))
        controls = []
        deadline = time.monotonic() + 60
        while finished != set(seen) and time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=30))
            if msg["op"] == "event":
                seen[msg["job_id"]].append(msg)
                if msg["type"] == "state" and msg["data"]["state"] in ("succeeded", "failed"):
                    finished.add(msg["job_id"])
            else:
                controls.append(msg)
        assert finished == set(seen)
        ops = [c["op"] for c in controls]
        assert ops.count("subscribed") == 2 and "pong" in ops
        assert any(c["op"] == "error" and c.get("job_id") == "nope" for c in controls)

        # Subscribing again with "after" replays only the tail.
        last = seen[a["id"]][-1]["id"]
        ws.send(json.dumps({"op": "subscribe", "jobs": [a["id"]], "after": {a["id"]: last - 2}}))
        tail = []
        while len(tail) < 2:
            msg = json.loads(ws.recv(timeout=10))
            if msg["op"] == "event":
                tail.append(msg["id"])
        assert tail == [last - 1, last]
    for job_id, events in seen.items():
        assert [e["id"] for e in events] == list(range(1, len(events) + 1)), job_id
        assert events[-1]["data"]["state"] == "succeeded"


# --- cancel and failure --------------------------------------------------------------------------


def test_cancel_stops_the_job_and_keeps_what_finished(client):
    job = start(client, small(iterations=3, image_model="bs-slow-image"))
    running = wait(client, job["id"], until=lambda j: j["timings"]["steps"] >= 14)
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    done = wait(client, job["id"])
    assert done["state"] == "cancelled" and done["finished_at"] is not None
    assert done["timings"]["steps"] >= running["timings"]["steps"]
    assert done["result"] is None
    lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
    assert lineage["state"] == "cancelled" and len(lineage["nodes"]) >= 4
    assert any(n["image"] for n in lineage["nodes"])
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409

    # A cancelled job can be resumed: it continues from what finished.
    steps_before = done["timings"]["steps"]
    assert client.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
    resumed = wait(client, job["id"], timeout=90)
    assert resumed["state"] == "succeeded" and resumed["attempts"] == 2
    assert resumed["timings"]["steps"] > steps_before


def test_a_provider_failure_fails_the_job_and_keeps_earlier_steps(client):
    job = start(client, small(iterations=2, image_model="bs-broken-image"))
    done = wait(client, job["id"])
    assert done["state"] == "failed"
    error = done["error"]
    # Every candidate failed at its image, so iteration 0 has none left: the job fails saying so.
    assert error["code"] == "all_candidates_failed" and "the mock GPU caught fire" in error["message"]
    assert error["message"].startswith("iteration 0: every candidate failed (4 of 4)")
    assert error["step"].endswith("/image")
    # The LLM phase finished before the images: its steps and the prompts are kept.
    events = [
        json.loads(line[6:])
        for line in client.get(f"/v1/jobs/{job['id']}/events").text.splitlines()
        if line.startswith("data: ")
    ]
    steps = [e["data"]["key"] for e in events if e["type"] == "step"]
    # 4 x (what, how, combine), and the round that holds them.
    assert [capability_of(k) for k in steps] == ["llm"] * 12 + [None] and steps[-1] == "i0/round/expand"
    assert events[-1]["data"]["state"] == "failed" and events[-1]["data"]["error"]["message"] == error["message"]
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    assert len(nodes) == 4 and all(n["combined"] and n["status"] == "failed" for n in nodes)
    assert all(n["error"]["stage"] == "image" for n in nodes)
    assert done["timings"]["steps"] == 13
    # Resuming a failed job needs a working model; the same params fail the same way again.
    assert client.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
    again = wait(client, job["id"])
    assert again["state"] == "failed" and again["attempts"] == 2 and again["timings"]["steps"] == 13


def test_an_unknown_model_is_refused_at_submit_naming_it(client):
    r = client.post("/v1/pipelines/beam_search", json=small(iterations=1, llm_model="no-such-llm"))
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "llm_model"
    assert "no-such-llm" in error["message"]


def test_finished_jobs_cannot_be_resumed(client):
    job = start(client, small(iterations=1))
    wait(client, job["id"])
    r = client.post(f"/v1/jobs/{job['id']}/resume")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


# --- files ---------------------------------------------------------------------------------------


def test_outputs_are_served_and_nothing_outside(client, daemon):
    job = start(client, small(iterations=1))
    done = wait(client, job["id"])
    meta = client.get(f"/v1/files/{done['output_dir']}/metadata.json")
    assert meta.status_code == 200 and meta.json()["jobId"] == job["id"]
    png = next(a for a in done["artifacts"] if a["media_type"] == "image/png")
    r = client.get(png["url"])
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert (daemon.data_dir / "loom.db").exists()
    for path in ("loom.db", "output/../loom.db", f"{done['output_dir']}/../../../loom.db", "%2e%2e/loom.db"):
        assert client.get(f"/v1/files/{path}").status_code == 404, path
