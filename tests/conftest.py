"""Shared fixtures: a live `loom serve` on a free port, spoken to over real HTTP."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from loom.sdk.testing.server import LoomServer, free_port

from tests.asset_support import MissingAsset, in_ci

ROOT = Path(__file__).resolve().parent.parent
__all__ = ["ROOT", "Daemon", "free_port", "openai_client", "write_config"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true`` a test skipped for a missing asset (``tests/asset_support.py``) fails:
    a CI run must not pass without what it was meant to check."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(MissingAsset) and in_ci():
        report.outcome = "failed"
        report.longrepr = f"{call.excinfo.value.msg} (CI=true: a missing test asset fails the run)"
    return report


@pytest.fixture(scope="session")
def openai_document() -> Path:
    """OpenAI's OpenAPI document (``tests/openai_schema.py``), for a test that validates against it."""
    from tests.openai_schema import require_document

    return require_document()


class Daemon(LoomServer):
    """A `loom serve` subprocess on a free port (the SDK's ``LoomServer``), for a config file and
    a data dir; its log goes into the data dir, where the files route must never serve it."""

    def __init__(self, config: Path, data_dir: Path, env: dict | None = None, args: list[str] | None = None) -> None:
        super().__init__(config, data_dir, env=env, data_dir=data_dir, args=args)
        self.config = self.config_path
        self.log = self.log_path


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
