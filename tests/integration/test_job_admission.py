"""Accepted jobs never fail for load (issue 28): a live daemon on the mock models, with model
queues deliberately small (``max_queue``), takes bursts of jobs from many concurrent clients
(httpx, asyncio) and finishes every one; jobs beyond the running budget wait ``queued`` with their
position; a queued job cancels at once; the only refusal is the job store's own bound (429 with
Retry-After, before anything is accepted)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import FINAL, sse_events, wait

BURST_CONFIG = """
[daemon]
host = "127.0.0.1"

[daemon.limits]
max_queue = 4

[routes]
chat = "bs-llm"
image = "bs-image"
vision = "bs-vision"
translation = "mock-translate"

[[models]]
id = "mock-translate"
provider = "mock"
capabilities = ["translation"]
options = { latency_ms = 2 }

[[models]]
id = "bs-llm"
provider = "mock"
capabilities = ["chat"]

[[models]]
id = "bs-image"
provider = "mock"
capabilities = ["image"]
options = { latency_ms = 5 }

[[models]]
id = "bs-vision"
provider = "mock"
capabilities = ["vision"]

# One slot, room for one waiting request: two interactive calls fill it.
[[models]]
id = "narrow-translate"
provider = "mock"
capabilities = ["translation"]
max_queue = 1
options = { latency_ms = 700 }
"""

USER_A, USER_B = "admission-key-a", "admission-key-b"
QUEUE_CONFIG = """
[daemon]
host = "127.0.0.1"

[[daemon.api_keys]]
key = { env = "T_ADM_A" }

[[daemon.api_keys]]
key = { env = "T_ADM_B" }

# A request waits at most a second in a model's queue (then 503 for an HTTP client).
[daemon.limits]
queue_timeout = 1

[jobs]
max_running = 1
max_queued_per_owner = 3

[[models]]
id = "slow-translate"
provider = "mock"
capabilities = ["translation"]
options = { latency_ms = 1500 }
"""


@pytest.fixture(scope="module")
def burst(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admission-burst")
    d = Daemon(write_config(tmp / "loom.toml", BURST_CONFIG), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admission-queue")
    env = {"T_ADM_A": USER_A, "T_ADM_B": USER_B}
    d = Daemon(write_config(tmp / "loom.toml", QUEUE_CONFIG), tmp / "data", env=env).start()
    yield d
    d.stop()


async def submit_all(url: str, pipeline: str, bodies: list[dict], clients: int) -> list[httpx.Response]:
    """POST every body from ``clients`` concurrent clients (each its own connection)."""
    todo = list(enumerate(bodies))
    out: list[httpx.Response | None] = [None] * len(bodies)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            while todo:
                i, body = todo.pop()
                out[i] = await c.post(f"/v1/pipelines/{pipeline}", json=body)

    await asyncio.gather(*(client() for _ in range(clients)))
    return [r for r in out if r is not None]


def settle(c: httpx.Client, ids: list[str], timeout: float = 60) -> dict[str, dict]:
    """Every job once none is queued or running: id -> job summary."""
    deadline = time.monotonic() + timeout
    while c.get("/v1/jobs", params={"state": "queued,running", "limit": 1}).json()["data"]:
        assert time.monotonic() < deadline, "jobs still queued or running"
        time.sleep(0.2)
    jobs: dict[str, dict] = {}
    offset = 0
    while True:
        page = c.get("/v1/jobs", params={"limit": 1000, "offset": offset}).json()
        jobs.update({j["id"]: j for j in page["data"]})
        if not page["has_more"]:
            break
        offset += 1000
    return {i: jobs[i] for i in ids}


#: Jobs in the burst: many times the running budget and the model's queue (max_queue = 4).
BURST = 100


def test_a_burst_of_translate_jobs_from_many_clients_all_succeed(burst):
    bodies = [{"text": f"burst text number {i}", "source": "en", "target": "fr"} for i in range(BURST)]
    responses = asyncio.run(submit_all(burst.url, "translate", bodies, clients=32))
    assert [r.status_code for r in responses] == [202] * BURST
    accepted = [r.json() for r in responses]
    # More jobs than the running budget: the rest wait queued, each told its place.
    queued = [j for j in accepted if j["state"] == "queued" and (j["position"] or 0) > 1]
    assert queued, "no job waited behind others"
    with httpx.Client(base_url=burst.url, timeout=30) as c:
        jobs = settle(c, [j["id"] for j in accepted])
        states = {s: sum(1 for j in jobs.values() if j["state"] == s) for s in FINAL}
        assert states == {"succeeded": BURST, "failed": 0, "cancelled": 0, "interrupted": 0}
        sample = c.get(f"/v1/jobs/{queued[-1]['id']}").json()
        assert sample["result"]["count"] == 1 and sample["position"] is None
        # The queued one was told its position when it was accepted, then ran.
        events = list(sse_events(c.get(f"/v1/jobs/{queued[-1]['id']}/events")))
        first = events[0]["data"]
        assert first["type"] == "state" and first["data"]["state"] == "queued" and first["data"]["position"] > 1
        assert [e["data"]["data"]["state"] for e in events if e["data"]["type"] == "state"][-2:] == [
            "running",
            "succeeded",
        ]


def test_beam_searches_submitted_together_keep_every_candidate(burst):
    params = {
        "prompt": "a red apple on a wooden table",
        "width": 64,
        "height": 64,
        "beam_width": 6,
        "keep_top": 2,
        "iterations": 1,
    }
    # Ten searches of six candidates each, as many at once as the running budget allows: more
    # image calls at a time than the model queue (max_queue = 4) holds.
    bodies = [{**params, "seed": i} for i in range(10)]
    responses = asyncio.run(submit_all(burst.url, "beam_search", bodies, clients=10))
    assert [r.status_code for r in responses] == [202] * 10
    with httpx.Client(base_url=burst.url, timeout=30) as c:
        jobs = [wait(c, r.json()["id"], timeout=120) for r in responses]
    assert [j["state"] for j in jobs] == ["succeeded"] * 10, [j["error"] for j in jobs if j["error"]]
    # A candidate's failure is tolerated by the search, so load could shrink a beam quietly: none did.
    assert [j["result"]["failed"] for j in jobs] == [0] * 10
    assert all(j["result"]["candidates"] == 6 for j in jobs)


def test_a_job_call_waits_for_room_where_an_http_client_is_refused(burst):
    """The model's queue is full of interactive requests: the next HTTP client gets 429, the
    job's call waits for room and the job succeeds."""
    with httpx.Client(base_url=burst.url, timeout=30) as c:
        body = {"model": "narrow-translate", "text": "hello", "source": "en", "target": "fr"}

        async def fill() -> tuple[list[int], str]:
            async with httpx.AsyncClient(base_url=burst.url, timeout=30) as ac:
                first = asyncio.create_task(ac.post("/v1/translations/text", json=body))
                await asyncio.sleep(0.2)  # running in the model's one slot
                second = asyncio.create_task(ac.post("/v1/translations/text", json=body))
                await asyncio.sleep(0.2)  # waiting: the queue (max_queue = 1) is full
                refused = await ac.post("/v1/translations/text", json=body)
                job = await ac.post(
                    "/v1/pipelines/translate",
                    json={"model": "narrow-translate", "text": "a job", "source": "en", "target": "fr"},
                )
                done = await asyncio.gather(first, second)
                return [refused.status_code, job.status_code, *(r.status_code for r in done)], job.json()["id"]

        statuses, job_id = asyncio.run(fill())
        assert statuses == [429, 202, 200, 200]
        job = wait(c, job_id, timeout=30)
        assert job["state"] == "succeeded", job["error"]
        events = list(sse_events(c.get(f"/v1/jobs/{job_id}/events")))
        waiting = [e["data"]["data"] for e in events if e["data"]["type"] == "waiting"]
        assert waiting and waiting[0]["reason"] == "queue_full" and waiting[0]["model"] == "narrow-translate"


def test_a_job_call_that_waits_past_the_queue_timeout_is_tried_again(queue):
    """An interactive request holds the model for 1.5 s; the job's call behind it waits past
    ``queue_timeout`` (1 s), which fails an HTTP client with 503 and only delays the job."""
    a = httpx.Client(base_url=queue.url, timeout=30, headers={"Authorization": f"Bearer {USER_A}"})
    body = {"text": "hello", "source": "en", "target": "fr"}
    try:

        async def race() -> tuple[list[int], str]:
            headers = {"Authorization": f"Bearer {USER_A}"}
            async with httpx.AsyncClient(base_url=queue.url, timeout=30, headers=headers) as ac:
                first = asyncio.create_task(ac.post("/v1/translations/text", json={**body, "model": "slow-translate"}))
                await asyncio.sleep(0.3)  # running in the model's one slot
                job = await ac.post("/v1/pipelines/translate", json=body)
                return [(await first).status_code, job.status_code], job.json()["id"]

        statuses, job_id = asyncio.run(race())
        assert statuses == [200, 202]
        job = wait(a, job_id, timeout=30)
        assert job["state"] == "succeeded", job["error"]
        events = list(sse_events(a.get(f"/v1/jobs/{job_id}/events")))
        waiting = [e["data"]["data"] for e in events if e["data"]["type"] == "waiting"]
        assert waiting and waiting[0]["reason"] == "queue_timeout"
    finally:
        a.close()


def test_queued_jobs_show_their_position_and_cancel_at_once(queue):
    a = httpx.Client(base_url=queue.url, timeout=30, headers={"Authorization": f"Bearer {USER_A}"})
    body = {"text": "slowly", "source": "en", "target": "fr"}
    jobs = [a.post("/v1/pipelines/translate", json=body).json() for _ in range(3)]
    try:
        running, second, third = jobs
        wait(a, running["id"], until=lambda j: j["state"] == "running", timeout=10)
        assert [a.get(f"/v1/jobs/{j['id']}").json()["position"] for j in jobs] == [None, 1, 2]
        listed = {j["id"]: j for j in a.get("/v1/jobs", params={"state": "queued"}).json()["data"]}
        assert {i: j["position"] for i, j in listed.items()} == {second["id"]: 1, third["id"]: 2}

        started = time.monotonic()
        r = a.post(f"/v1/jobs/{second['id']}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert time.monotonic() - started < 1.0  # never started: nothing to wait for
        assert r.json()["started_at"] is None and r.json()["attempts"] == 0
        assert a.get(f"/v1/jobs/{third['id']}").json()["position"] == 1
        # Its move from 2 to 1 is an event too (positions are told as they halve).
        told = []
        with a.stream("GET", f"/v1/jobs/{third['id']}/events") as stream:
            for event in sse_events(stream):
                if event["data"]["type"] == "position":
                    told.append(event["data"]["data"]["position"])
                    break
        assert told == [1]
        # The next in line runs when the running one ends.
        assert wait(a, running["id"], timeout=20)["state"] == "succeeded"
        assert wait(a, third["id"], timeout=20)["state"] == "succeeded"
    finally:
        for j in jobs:
            a.post(f"/v1/jobs/{j['id']}/cancel")
        a.close()


def test_past_the_owners_queue_bound_a_submission_is_429_and_nothing_is_accepted(queue):
    a = httpx.Client(base_url=queue.url, timeout=30, headers={"Authorization": f"Bearer {USER_A}"})
    b = httpx.Client(base_url=queue.url, timeout=30, headers={"Authorization": f"Bearer {USER_B}"})
    body = {"text": "slowly", "source": "en", "target": "fr"}
    made: list[str] = []
    try:
        made.append(a.post("/v1/pipelines/translate", json=body).json()["id"])  # runs (max_running = 1)
        wait(a, made[0], until=lambda j: j["state"] == "running", timeout=10)
        for _ in range(3):  # max_queued_per_owner = 3
            r = a.post("/v1/pipelines/translate", json=body)
            assert r.status_code == 202 and r.json()["state"] == "queued"
            made.append(r.json()["id"])
        before = len(a.get("/v1/jobs", params={"limit": 1000}).json()["data"])
        refused = a.post("/v1/pipelines/translate", json=body)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        error = refused.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "rate_limit_error" and error["code"] == "job_queue_full"
        assert "max_queued_per_owner" in error["message"]
        assert len(a.get("/v1/jobs", params={"limit": 1000}).json()["data"]) == before  # nothing accepted
        # Another key's own bound is untouched.
        other = b.post("/v1/pipelines/translate", json=body)
        assert other.status_code == 202 and other.json()["position"] == 4
        made.append(other.json()["id"])
        # A place frees when a queued job leaves: the same client is accepted again.
        a.post(f"/v1/jobs/{made[3]}/cancel")
        again = a.post("/v1/pipelines/translate", json=body)
        assert again.status_code == 202
        made.append(again.json()["id"])
    finally:
        for job_id in made:
            a.post(f"/v1/jobs/{job_id}/cancel")
        a.close()
        b.close()


def test_queued_jobs_resume_in_their_order_after_a_restart(queue):
    """A stop leaves the queued jobs ``interrupted`` with the running one; the next start resumes
    them all, in the order they were accepted. (A kill leaves them ``queued`` in the store, and
    start-up marks queued and running jobs interrupted alike, as it always has.)"""
    a = httpx.Client(base_url=queue.url, timeout=30, headers={"Authorization": f"Bearer {USER_A}"})
    body = {"text": "slowly", "source": "en", "target": "fr"}
    jobs = [a.post("/v1/pipelines/translate", json=body).json()["id"] for _ in range(3)]
    wait(a, jobs[0], until=lambda j: j["state"] == "running", timeout=10)
    assert [a.get(f"/v1/jobs/{j}").json()["position"] for j in jobs] == [None, 1, 2]
    a.close()
    queue.restart()
    with httpx.Client(base_url=queue.url, timeout=30, headers={"Authorization": f"Bearer {USER_A}"}) as a:
        done = [wait(a, j, timeout=30) for j in jobs]
        assert [j["state"] for j in done] == ["succeeded"] * 3
        # Each ran once after the restart, in the order they were accepted.
        assert done[0]["started_at"] < done[1]["started_at"] < done[2]["started_at"]
        assert done[1]["finished_at"] <= done[2]["started_at"]
