"""The parameter policy applies to the model that serves, fallbacks included.

A front Loom's first choice is a remote model (the openai provider, which honours every optional
parameter) whose upstream always fails; it falls back to a local mock model, which does not honour
``top_k``. The request is refused naming ``top_k`` and the mock (strict), or served by the mock
with ``top_k`` named in ``x-loom-ignored`` (``compat = "lenient"``): the fallback's own
``Provider.parameters`` is what counts, not the first choice's.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import MOCK_CONFIG, Daemon, openai_client, write_config

LENIENT = '[daemon]\nhost = "127.0.0.1"\ncompat = "lenient"\n'

FRONT_CONFIG = """
{daemon}
[plugins.openai.instances.up]
base_url = "{up}/v1"
timeout = 10
retries = 0

[[models]]
id = "local-chat"
provider = "mock"
capabilities = ["chat"]

[[models]]
id = "remote-broken"
provider = "openai"
options = {{ instance = "up", model = "mock-broken" }}
capabilities = ["chat"]
fallbacks = ["local-chat"]
"""

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    # Lenient, so the upstream's mock-broken fails (a 502) rather than refusing top_k itself.
    tmp = tmp_path_factory.mktemp("policy-up")
    config = MOCK_CONFIG.replace('[daemon]\nhost = "127.0.0.1"\n', LENIENT)
    d = Daemon(write_config(tmp / "up.toml", config), tmp / "data").start()
    yield d
    d.stop()


def _front(upstream: Daemon, tmp, daemon: str) -> Daemon:
    config = FRONT_CONFIG.format(daemon=daemon, up=upstream.url)
    return Daemon(write_config(tmp / "front.toml", config), tmp / "data").start()


@pytest.fixture(scope="module")
def strict(upstream, tmp_path_factory):
    d = _front(upstream, tmp_path_factory.mktemp("policy-strict"), '[daemon]\nhost = "127.0.0.1"\n')
    yield d
    d.stop()


@pytest.fixture(scope="module")
def lenient(upstream, tmp_path_factory):
    d = _front(upstream, tmp_path_factory.mktemp("policy-lenient"), LENIENT)
    yield d
    d.stop()


def test_the_first_choice_fails_and_its_fallback_serves(strict):
    raw = openai_client(strict).chat.completions.with_raw_response.create(model="remote-broken", messages=HELLO)
    assert raw.headers["x-loom-model"] == "local-chat" and "x-loom-ignored" not in raw.headers
    assert raw.parse().choices[0].message.content


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_strict_refuses_what_the_fallback_does_not_honour(strict, stream):
    with pytest.raises(openai.BadRequestError) as e:
        openai_client(strict).chat.completions.create(
            model="remote-broken", messages=HELLO, stream=stream, extra_body={"top_k": 5}
        )
    error = e.value.body
    assert isinstance(error, dict) and error["param"] == "top_k" and error["code"] == "unsupported_parameter"
    assert "local-chat" in error["message"] and "mock" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_lenient_names_what_the_fallback_left_out(lenient, stream):
    body = {"model": "remote-broken", "messages": HELLO, "top_k": 5, "stream": stream}
    r = httpx.post(f"{lenient.url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-loom-model"] == "local-chat" and r.headers["x-loom-ignored"] == "top_k"
