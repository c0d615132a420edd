"""A live `loom serve` with mock models and this plugin loaded (it is installed, so the daemon
finds it through its entry point, as a user's would)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from loom.sdk.testing import LoomServer

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "mock-chat"
image = "mock-image"
vision = "mock-vision"
translation = "mock-translate"
embedding = "mock-chat"

[plugins.seed_api.seed004]
# seed 004's "openai" provider names, served here by mock models so the switch can be exercised
openai_llm = "mock-chat"
openai_image = "mock-image"
openai_vision = "mock-vision"

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat", "completion", "embedding"]

[[models]]
id = "mock-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "mock-vision"
provider = "mock"
capabilities = ["vision", "chat"]

[[models]]
id = "mock-translate"
provider = "mock"
capabilities = ["translation"]
"""


@pytest.fixture(scope="session")
def loom(tmp_path_factory):
    with LoomServer(CONFIG, tmp_path_factory.mktemp("seed-api")) as server:
        yield server


@pytest.fixture
def client(loom):
    with httpx.Client(base_url=loom.url, timeout=60) as c:
        yield c


def poll(fetch, done, timeout: float = 60.0, every: float = 0.1) -> Any:
    """Call ``fetch()`` until ``done(value)``, as the seeds' front ends poll; the last value."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"still not done after {timeout}s: {value}")
        time.sleep(every)
        value = fetch()
    return value
