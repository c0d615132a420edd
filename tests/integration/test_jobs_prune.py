"""Data kept: by default nothing a user generated is deleted; ``POST /admin/jobs/prune`` and
``loom jobs prune`` remove old jobs on request (dry run first), keeping retrieval entries unless
told otherwise; retention, when configured, is announced at start-up. On a live daemon."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import MOCK_CONFIG, Daemon, write_config
from tests.integration.jobs_support import wait


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(write_config(tmp_path / "loom.toml", MOCK_CONFIG), tmp_path / "data").start()
    yield d
    d.stop()


def story(http: httpx.Client, prompt: str) -> dict:
    r = http.post("/v1/pipelines/story", json={"prompt": prompt, "model": "mock-chat", "embedding_model": "mock-chat"})
    assert r.status_code == 202, r.text
    done = wait(http, r.json()["id"])
    assert done["state"] == "succeeded", done["error"]
    return done


def loom(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loom.daemon.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_prune_on_request_keeps_retrieval_entries(daemon):
    assert "job retention is on" not in daemon.output()
    with httpx.Client(base_url=daemon.url, timeout=30) as http:
        job = story(http, "a lighthouse keeper's cat")
        folder = daemon.data_dir / job["output_dir"]
        assert folder.is_dir()
        items = http.get("/v1/rag/stats").json()["items"]
        assert items >= 1

        r = http.post("/admin/jobs/prune", json={"older_than": "1d"})
        assert r.status_code == 200 and r.json()["count"] == 0  # it is new

        r = http.post("/admin/jobs/prune", json={"older_than": 0, "dry_run": True})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["dry_run"] and answer["rag"] == "keep"
        assert [j["id"] for j in answer["data"]] == [job["id"]] and answer["data"][0]["pipeline"] == "story"
        assert http.get(f"/v1/jobs/{job['id']}").status_code == 200 and folder.is_dir()

        r = http.post("/admin/jobs/prune", json={"older_than": "0s"})
        assert r.status_code == 200 and r.json()["count"] == 1 and not r.json()["dry_run"]
        assert http.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert not folder.exists()
        assert http.get("/v1/rag/stats").json()["items"] == items  # seed 001's memory stays

        from loom.sdk.client import LoomClient

        with LoomClient(daemon.url) as client:
            assert client.prune_jobs("1d", dry_run=True)["count"] == 0

        r = http.post("/admin/jobs/prune", json={"older_than": "never"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "older_than"
        r = http.post("/admin/jobs/prune", json={"older_than": "soon"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "older_than"

        # Deleting the entries too, when asked.
        job = story(http, "an owl's library")
        r = http.post("/admin/jobs/prune", json={"older_than": 0, "dry_run": True, "rag": "delete"})
        (listed,) = r.json()["data"]
        assert listed["id"] == job["id"] and listed["rag_entries"] >= 1
        r = http.post("/admin/jobs/prune", json={"older_than": 0, "rag": "delete"})
        assert r.json()["data"][0]["rag_entries"] == listed["rag_entries"]
        assert http.get("/v1/rag/stats").json()["items"] == items


def test_loom_jobs_prune_through_the_daemon_and_without_it(daemon):
    env = {**daemon.env, "LOOM_URL": daemon.url}
    with httpx.Client(base_url=daemon.url, timeout=30) as http:
        job = story(http, "a fox and a lantern")
    run = loom("jobs", "prune", "--older-than", "0s", "--dry-run", "--json", "--config", str(daemon.config), env=env)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["dry_run"] and [j["id"] for j in answer["data"]] == [job["id"]]
    run = loom("jobs", "prune", "--older-than", "0s", "--dry-run", "--config", str(daemon.config), env=env)
    assert run.returncode == 0 and job["id"] in run.stdout and "would remove 1 job(s)" in run.stdout
    daemon.stop()
    # No daemon answering: the store in the data dir is pruned directly.
    env = {**daemon.env, "LOOM_URL": "http://127.0.0.1:9"}
    where = ("--config", str(daemon.config), "--data-dir", str(daemon.data_dir))
    run = loom("jobs", "prune", "--older-than", "0s", *where, env=env)
    assert run.returncode == 0, run.stderr
    assert "removed 1 job(s)" in run.stdout and "retrieval entries kept" in run.stdout
    assert not (daemon.data_dir / job["output_dir"]).exists()
    run = loom("jobs", "prune", "--older-than", "forever", *where, env=env)
    assert run.returncode == 2 and "older_than" in run.stderr
    daemon.start()
    with httpx.Client(base_url=daemon.url, timeout=30) as http:
        assert http.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_retention_when_configured_is_announced_at_start_up(tmp_path):
    config = MOCK_CONFIG.replace(
        '[daemon]\nhost = "127.0.0.1"\n', '[daemon]\nhost = "127.0.0.1"\n\n[jobs]\nretention = "30d"\n'
    )
    d = Daemon(write_config(tmp_path / "loom.toml", config), tmp_path / "data").start()
    try:
        assert "job retention is on: finished jobs older than 30d are deleted" in d.output()
        assert "retrieval entries: kept" in d.output()
    finally:
        d.stop()
