"""In-process apps on the mock provider for the queue, tier and tracing tests."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from loom.daemon.app import create_app
from loom.daemon.config import decode_config

CONFIG = """
[daemon]
data_dir = "{data_dir}"
{daemon}
[[models]]
id = "m"
provider = "mock"
capabilities = ["chat", "completion", "embedding"]
{model}
"""

KEYS = """
[[daemon.api_keys]]
key = { env = "T_QUEUE_USER_ONE" }

[[daemon.api_keys]]
key = { env = "T_QUEUE_USER_TWO" }

[[daemon.api_keys]]
key = { env = "T_QUEUE_ADMIN" }
role = "admin"
"""
#: The keys' values, for ``monkeypatch.setenv``.
KEY_ENV = {"T_QUEUE_USER_ONE": "user-one", "T_QUEUE_USER_TWO": "user-two", "T_QUEUE_ADMIN": "admin-key"}


def mock_app(tmp_path: Path, model: str = "", daemon: str = "", extra: str = "", span_exporter: Any = None):
    raw = tomllib.loads(CONFIG.format(data_dir=tmp_path, daemon=daemon, model=model) + extra)
    return create_app(decode_config(raw), span_exporter=span_exporter)


def keyed_app(tmp_path: Path, monkeypatch, model: str = ""):
    for name, value in KEY_ENV.items():
        monkeypatch.setenv(name, value)
    return mock_app(tmp_path, model, daemon=KEYS)


@asynccontextmanager
async def concurrent_client(app, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app in this event loop, its lifespan run: unlike Litestar's test
    clients, requests sent together are served together (they queue in the scheduler)."""
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30, headers=headers
        ) as client:
            yield client
