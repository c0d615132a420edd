"""An accepted job is never lost: SIGKILL mid-job, restart, ``interrupted``, resume completes it
without redoing finished steps. A graceful stop leaves running jobs ``interrupted`` too. By
default the restarted daemon resumes them itself ([jobs] resume_interrupted)."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import beam_config, small, start, wait

MANUAL = "\n[jobs]\nresume_interrupted = false\n"


@pytest.fixture
def daemon(tmp_path):
    """Resume is left to the client here, to see the interrupted state."""
    d = Daemon(write_config(tmp_path / "loom.toml", beam_config(slow_ms=300) + MANUAL), tmp_path / "data").start()
    yield d
    d.stop()


@pytest.fixture
def auto_daemon(tmp_path):
    d = Daemon(write_config(tmp_path / "loom.toml", beam_config(slow_ms=300)), tmp_path / "data").start()
    yield d
    d.stop()


def events_of(client: httpx.Client, job_id: str, after: int = 0) -> list[dict]:
    text = client.get(f"/v1/jobs/{job_id}/events", params={"after": after}).text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def step_rows(daemon: Daemon, job_id: str) -> dict[str, int]:
    """key -> attempt, read straight from the job store."""
    with sqlite3.connect(f"file:{daemon.data_dir / 'loom.db'}?mode=ro", uri=True) as db:
        return dict(db.execute("select key, attempt from job_steps where job_id = ?", [job_id]).fetchall())


def test_sigkill_mid_job_then_resume_continues_from_the_last_finished_step(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        job = start(client, small(iterations=3, image_model="bs-slow-image"))
        # Past iteration 0's images, well before the end (12 LLM steps, then 300 ms per image).
        mid = wait(client, job["id"], until=lambda j: j["timings"]["steps"] >= 18)
        assert mid["state"] == "running"
    daemon.restart(kill=True)  # SIGKILL: no shutdown code runs

    before = step_rows(daemon, job["id"])
    assert len(before) >= 18 and set(before.values()) == {1}
    images = sorted((daemon.data_dir / mid["output_dir"]).glob("*.png"))
    stamps = {p.name: p.stat().st_mtime_ns for p in images}
    assert len(images) >= 4

    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        job_now = client.get(f"/v1/jobs/{job['id']}").json()
        assert job_now["state"] == "interrupted" and job_now["finished_at"] is None
        assert job_now["timings"]["steps"] == len(before)
        events = client.get(f"/v1/jobs/{job['id']}/events").text
        assert '"state":"interrupted"' in events

        r = client.post(f"/v1/jobs/{job['id']}/resume")
        assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
        done = wait(client, job["id"], timeout=120)
        assert done["state"] == "succeeded", done["error"]
        assert done["attempts"] == 2

        after = step_rows(daemon, job["id"])
        # Steps finished before the kill were not redone; the rest ran in the second attempt.
        assert all(after[k] == 1 for k in before)
        assert {k for k, a in after.items() if a == 2} == set(after) - set(before)
        assert len(after) == done["timings"]["steps"]
        for p in images:
            assert p.stat().st_mtime_ns == stamps[p.name], f"{p.name} was regenerated"
        assert len(list((daemon.data_dir / done["output_dir"]).glob("*.png"))) == 12

        lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
        scored = [n for n in lineage["nodes"] if n["score"] is not None]
        assert len(scored) == 12 and lineage["winner"] == max(scored, key=lambda n: n["score"])["id"]
        # Events continued after the restart with increasing ids.
        ids = [
            int(line[4:])
            for line in client.get(f"/v1/jobs/{job['id']}/events").text.splitlines()
            if line.startswith("id: ")
        ]
        assert ids == list(range(1, len(ids) + 1))


def test_a_graceful_stop_leaves_running_jobs_interrupted(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        job = start(client, small(iterations=3, image_model="bs-slow-image"))
        wait(client, job["id"], until=lambda j: j["timings"]["steps"] >= 13)
    daemon.restart()  # SIGTERM
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        state = client.get(f"/v1/jobs/{job['id']}").json()
        assert state["state"] == "interrupted"
        client.post(f"/v1/jobs/{job['id']}/resume")
        assert wait(client, job["id"], timeout=120)["state"] == "succeeded"


def test_the_restarted_daemon_resumes_interrupted_jobs_itself(auto_daemon):
    daemon = auto_daemon
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        job = start(client, small(iterations=2, image_model="bs-slow-image"))
        wait(client, job["id"], until=lambda j: j["timings"]["steps"] >= 15)
    daemon.stop(kill=True)
    before = step_rows(daemon, job["id"])
    daemon.start()
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        done = wait(client, job["id"], timeout=120)
        assert done["state"] == "succeeded", done["error"]
        assert done["attempts"] == 2 and done["message"] == ""
        # One stream from the start runs through the interruption into the resumed run, to its end.
        events = events_of(client, job["id"])
        states = [e["data"].get("state") for e in events if e["type"] == "state"]
        assert "interrupted" in states and states[-1] == "succeeded"
        cut = next(i for i, e in enumerate(events) if e["data"].get("state") == "interrupted")
        assert events[cut + 1]["data"]["resumed"] is True
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids))
    after = step_rows(daemon, job["id"])
    assert set(before.values()) == {1} and all(after[k] == 1 for k in before)  # nothing was redone
    assert {k for k, a in after.items() if a == 2} == set(after) - set(before)
