"""Fixtures for the TUI tests: a frozen clock and steady cursor (autouse), and a live daemon with
mock models small enough for a CPU budget that forces evictions."""

from __future__ import annotations

import time

import pytest
from loom.tui import format as fmt
from textual.widgets import Input

from tests.conftest import Daemon, write_config

from .fakes import NOW

# A 300 MiB budget: tui-a and tui-b (200 MiB each) cannot both be resident, so loading one evicts
# the other. The beam-search roles are small; bs-slow-image makes a job slow enough to watch.
CONFIG = """
[daemon]
host = "127.0.0.1"

[scheduler]
keep_alive_interval = 0.2

[scheduler.devices.cpu]
budget = "300MiB"

[routes]
chat = "bs-llm"
image = "bs-image"
vision = "bs-vision"

[[models]]
id = "bs-llm"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 20 }

[[models]]
id = "bs-image"
provider = "mock"
capabilities = ["image"]
options = { memory_mb = 20 }

[[models]]
id = "bs-slow-image"
provider = "mock"
capabilities = ["image"]
options = { memory_mb = 20, latency_ms = 400 }

[[models]]
id = "bs-vision"
provider = "mock"
capabilities = ["vision"]
options = { memory_mb = 20 }

[[models]]
id = "tui-a"
provider = "mock"
capabilities = ["chat"]
keep_alive = -1
options = { memory_mb = 200, load_seconds = 0.05 }

[[models]]
id = "tui-b"
provider = "mock"
capabilities = ["chat"]
keep_alive = -1
options = { memory_mb = 200, load_seconds = 0.05 }
"""


@pytest.fixture(autouse=True)
def deterministic(monkeypatch):
    """No clocks or blinking cursors in what the TUI draws: time stands still at NOW, in UTC."""
    monkeypatch.setattr(fmt, "now", lambda: NOW)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def live_clock(monkeypatch):
    """For tests against a live daemon: the real clock (keep-alive countdowns, job ages)."""
    monkeypatch.setattr(fmt, "now", time.time)


@pytest.fixture(scope="session")
def tui_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tui")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data").start()
    yield d
    d.stop()


async def until(pilot, predicate, timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.05)
