"""Graceful shutdown of a real `loom serve`: SIGTERM lets calls in flight finish, ends watch-only
streams at once, leaves running jobs interrupted and resumable, and flushes the stores; a second
SIGTERM or the end of the grace period cuts what is left, and the stores are flushed all the same."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import beam_config, small, start, wait


def config(grace: str, chat_ms: int) -> str:
    return (
        beam_config(slow_ms=2000).replace(
            '[daemon]\nhost = "127.0.0.1"\n', f'[daemon]\nhost = "127.0.0.1"\nshutdown_grace = "{grace}"\n'
        )
        + f"""
[[models]]
id = "slow-chat"
provider = "mock"
capabilities = ["chat"]
options = {{ latency_ms = {chat_ms} }}
"""
    )


def daemon_for(tmp_path, grace: str, chat_ms: int) -> Daemon:
    return Daemon(write_config(tmp_path / "loom.toml", config(grace, chat_ms)), tmp_path / "data").start()


def chat_in_thread(url: str) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        started = time.monotonic()
        try:
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "slow-chat", "messages": [{"role": "user", "content": "hello"}]},
                timeout=120,
            )
            out["status"], out["text"] = r.status_code, r.text
        except httpx.HTTPError as e:
            out["error"] = e
        out["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def watch(url: str, path: str) -> tuple[threading.Thread, dict]:
    """Read an SSE stream to its end in a thread; records when it ended."""
    out: dict = {"lines": 0}

    def run() -> None:
        try:
            with httpx.stream("GET", f"{url}{path}", timeout=120) as r:
                out["status"] = r.status_code
                for _ in r.iter_lines():
                    out["lines"] += 1
        except httpx.HTTPError as e:
            out["error"] = e
        out["ended"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def job_state(data_dir, job_id: str) -> str:
    """The state the daemon left in its database (read directly: no daemon start marks it)."""
    db = sqlite3.connect(data_dir / "loom.db")
    try:
        return db.execute("select state from jobs where id = ?", [job_id]).fetchone()[0]
    finally:
        db.close()


def wait_exit(daemon: Daemon, timeout: float) -> float:
    started = time.monotonic()
    daemon.proc.wait(timeout)
    return time.monotonic() - started


def test_sigterm_finishes_calls_in_flight_ends_watchers_and_leaves_jobs_resumable(tmp_path):
    daemon = daemon_for(tmp_path, grace="30s", chat_ms=3000)
    try:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            job = start(client, small(iterations=3, image_model="bs-slow-image"))
            wait(client, job["id"], until=lambda j: j["state"] == "running")
        job_stream, job_seen = watch(daemon.url, f"/v1/jobs/{job['id']}/events")
        admin_stream, admin_seen = watch(daemon.url, "/admin/events")
        chat, answer = chat_in_thread(daemon.url)
        time.sleep(0.8)  # the chat is in flight, the streams are open

        signalled = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        for thread in (job_stream, admin_stream):
            thread.join(10)
        # Watch-only streams end at once, not after the grace period or the chat.
        assert admin_seen["ended"] - signalled < 2.0 and "error" not in admin_seen, admin_seen
        assert job_seen["ended"] - signalled < 2.0 and "error" not in job_seen, job_seen
        with pytest.raises(httpx.ConnectError):  # no new connections
            httpx.get(f"{daemon.url}/health", timeout=2)

        chat.join(30)
        assert answer.get("status") == 200, answer  # the call in flight finished
        assert json.loads(answer["text"])["choices"][0]["message"]["content"]
        waited = wait_exit(daemon, 20)
        assert time.monotonic() - signalled < 10, "the daemon waited for more than its call in flight"
        assert waited < 10

        # Flushed: the job was left interrupted by the stopping daemon itself, and the WAL was
        # checkpointed into the database when the stores closed.
        assert not (daemon.data_dir / "loom.db-wal").exists()
        assert not (daemon.data_dir / "records.db-wal").exists()
        assert job_state(daemon.data_dir, job["id"]) == "interrupted"

        daemon.start()  # resumes interrupted jobs itself ([jobs] resume_interrupted)
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            done = wait(client, job["id"], timeout=120)
            assert done["state"] == "succeeded" and done["attempts"] == 2
    finally:
        daemon.stop()


@pytest.mark.parametrize("ending", ["second-sigterm", "grace-period"])
def test_a_second_sigterm_or_the_grace_period_cuts_calls_and_still_flushes(tmp_path, ending):
    grace = "60s" if ending == "second-sigterm" else "1s"
    daemon = daemon_for(tmp_path, grace=grace, chat_ms=60_000)
    try:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            job = start(client, small(iterations=3, image_model="bs-slow-image"))
            wait(client, job["id"], until=lambda j: j["state"] == "running")
        chat, answer = chat_in_thread(daemon.url)
        time.sleep(0.8)
        signalled = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        if ending == "second-sigterm":
            time.sleep(1.0)
            assert daemon.proc.poll() is None, "one SIGTERM must wait for the call in flight"
            daemon.proc.send_signal(signal.SIGTERM)
        wait_exit(daemon, 20)
        assert time.monotonic() - signalled < 8
        chat.join(10)
        # Cut, and told so in OpenAI's error shape (a client retries a 503).
        assert answer.get("status") == 503, answer
        assert "shutting down" in json.loads(answer["text"])["error"]["message"]
        assert not (daemon.data_dir / "loom.db-wal").exists()
        assert job_state(daemon.data_dir, job["id"]) == "interrupted"
        assert "cutting 1 call(s)" in daemon.output()
    finally:
        daemon.stop()
