"""A live `loom serve` with mock models and this plugin loaded (it is installed, so the daemon
finds it through its entry point, as a user's would)."""

from __future__ import annotations

import httpx
import pytest
from loom.sdk.testing import LoomServer
from seed_helpers import CONFIG


@pytest.fixture(scope="session")
def loom(tmp_path_factory):
    with LoomServer(CONFIG, tmp_path_factory.mktemp("seed-api")) as server:
        yield server


@pytest.fixture
def client(loom):
    with httpx.Client(base_url=loom.url, timeout=60) as c:
        yield c
