"""Shared fixtures: a live `loom serve` on a free port, spoken to over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A `loom serve` subprocess; ``url`` is its base URL."""

    def __init__(self, config: Path, data_dir: Path, env: dict | None = None) -> None:
        self.config, self.data_dir = config, data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / f"daemon-{self.port}.log"

    def start(self, timeout: float = 60) -> "Daemon":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "loom.daemon.cli", "serve", "--config", str(self.config),
               "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loom serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"loom serve did not come up:\n{self.log.read_text()}")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, kill: bool = False) -> "Daemon":
        self.stop(kill=kill)
        return self.start()

    def output(self) -> str:
        return self.log.read_text()


def write_config(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


MOCK_CONFIG = """
[daemon]
host = "127.0.0.1"

[daemon.limits]
max_body_bytes = 1048576

[routes]
vision = "mock-vision"

[[models]]
id = "mock-chat"
provider = "mock"
aliases = ["mock-alias"]
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

[[models]]
id = "mock-broken"
provider = "mock"
capabilities = ["chat", "image"]
options = { fail_rate = 1.0, fail_message = "the mock GPU caught fire" }
"""


@pytest.fixture(scope="session")
def default_daemon(tmp_path_factory):
    """The shipped plugins.toml: SmolLM2 for chat plus the mock models."""
    d = Daemon(ROOT / "plugins.toml", tmp_path_factory.mktemp("default-data")).start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def mock_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mock")
    d = Daemon(write_config(tmp / "loom.toml", MOCK_CONFIG), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def keyed_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed")
    cfg = MOCK_CONFIG.replace(
        '[daemon]\nhost = "127.0.0.1"\n',
        '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_USER_KEY" }\n\n'
        '[[daemon.api_keys]]\nkey = { env = "T_ADMIN_KEY" }\nrole = "admin"\n',
    )
    env = {"T_USER_KEY": "user-secret-1", "T_ADMIN_KEY": "admin-secret-1"}
    d = Daemon(write_config(tmp / "loom.toml", cfg), tmp / "data", env=env).start()
    yield d
    d.stop()


def openai_client(daemon: Daemon, key: str = "none", **kw):
    import openai

    return openai.OpenAI(base_url=f"{daemon.url}/v1", api_key=key, max_retries=0, **kw)
