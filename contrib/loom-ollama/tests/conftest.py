"""A fake Ollama on a loopback port, shared by the tests of this package."""

from __future__ import annotations

import pytest
from fake_ollama import FakeOllama


@pytest.fixture(scope="session")
def fake_ollama():
    server = FakeOllama(models={"tiny": 123_456_789, "embedder": 45_678_901}).start()
    yield server
    server.stop()
