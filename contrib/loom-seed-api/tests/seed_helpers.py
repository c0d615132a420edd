"""What the seed API tests share: the daemon's config (mock models) and polling as the seeds'
front ends poll. (A module of its own: ``conftest`` is a name every test folder has.)"""

from __future__ import annotations

import time
from typing import Any

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
