"""Per-principal quotas ([daemon.quotas]): requests per minute and requests in flight, a 429
with Retry-After in each dialect's shape past them, OpenAI's x-ratelimit-* headers on every
counted answer; a stream holds its place until it ends, and one principal's use is not another's."""

from __future__ import annotations

import concurrent.futures
import time

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config

KEYS = {
    "alice": "quota-alice",
    "bob": "quota-bob",
    "carol": "quota-carol",
    "slow": "quota-slow",
    "one": "quota-one",
    "dave": "quota-dave",
}
CONFIG = """
[daemon]
host = "127.0.0.1"

[daemon.quotas]
requests_per_minute = 3

[daemon.quotas.principals.bob]
requests_per_minute = 5

[daemon.quotas.principals.slow]
requests_per_minute = 0
max_concurrent = 2

[daemon.quotas.principals.dave]
requests_per_minute = 0
tokens_per_minute = 200

[daemon.quotas.principals.one]
requests_per_minute = 0
max_concurrent = 1

[[models]]
id = "x-ok"
provider = "mock"
capabilities = ["chat", "completion"]

[[models]]
id = "x-slow"
provider = "mock"
capabilities = ["chat"]
options = { latency_ms = 1500 }

[[models]]
id = "x-drip"
provider = "mock"
capabilities = ["chat"]
options = { token_latency_ms = 200 }
""" + "".join(f'\n[[daemon.api_keys]]\nkey = {{ env = "T_Q_{name.upper()}" }}\nprincipal = "{name}"\n' for name in KEYS)
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def quota_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quotas")
    env = {f"T_Q_{name.upper()}": key for name, key in KEYS.items()}
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data", env=env).start()
    yield d
    d.stop()


def test_requests_per_minute_in_each_dialect(quota_daemon):
    d = quota_daemon
    c = openai_client(d, key=KEYS["alice"])
    remaining = []
    for _ in range(3):
        raw = c.chat.completions.with_raw_response.create(model="x-ok", messages=HI)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    # Past it: OpenAI's 429 with Retry-After, a stream included (it is the request that counts).
    with pytest.raises(openai.RateLimitError) as raised:
        c.chat.completions.create(model="x-ok", messages=HI, stream=True)
    e = raised.value
    assert e.status_code == 429 and e.body["type"] == "rate_limit_error" and "3 requests per minute" in e.message
    assert 1 <= int(e.response.headers["retry-after"]) <= 60
    assert e.response.headers["x-ratelimit-remaining-requests"] == "0"
    # Anthropic's shape on the Messages API (429 rate_limit_error, not its 529 for a busy server).
    ant = anthropic.Anthropic(base_url=d.url, api_key=KEYS["alice"], max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as ant_raised:
        ant.messages.create(model="x-ok", max_tokens=5, messages=HI)
    assert ant_raised.value.status_code == 429
    assert ant_raised.value.body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in ant_raised.value.response.headers
    # Ollama's shape on /api.
    r = httpx.post(
        f"{d.url}/api/chat",
        json={"model": "x-ok", "messages": HI, "stream": False},
        headers={"Authorization": f"Bearer {KEYS['alice']}"},
    )
    assert r.status_code == 429 and isinstance(r.json()["error"], str) and "retry-after" in r.headers
    # Reading is not counted; another principal has its own window, and its own limit.
    assert c.models.list().data
    bob = openai_client(d, key=KEYS["bob"])
    seen = [bob.chat.completions.with_raw_response.create(model="x-ok", messages=HI).headers for _ in range(5)]
    assert seen[0]["x-ratelimit-limit-requests"] == "5" and seen[-1]["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError):
        bob.completions.create(model="x-ok", prompt="hi")


def test_n_choices_are_not_a_way_round_it(quota_daemon):
    c = openai_client(quota_daemon, key=KEYS["carol"])
    for _ in range(3):
        assert len(c.chat.completions.create(model="x-ok", messages=HI, n=4).choices) == 4
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="x-ok", messages=HI, n=1)


def test_concurrent_requests_past_max_concurrent_are_429_and_a_stream_holds_its_place(quota_daemon):
    d = quota_daemon
    c = openai_client(d, key=KEYS["slow"], timeout=30)

    def ask(_: int) -> int:
        try:
            c.chat.completions.create(model="x-slow", messages=HI)
            return 200
        except openai.RateLimitError:
            return 429

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(ask, range(6)))
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    # The places came back when the answers ended.
    assert ask(0) == 200


def test_a_stream_holds_its_place_until_it_ends(quota_daemon):
    c = openai_client(quota_daemon, key=KEYS["one"], timeout=30)
    stream = c.chat.completions.create(model="x-drip", messages=HI, stream=True)
    try:
        next(iter(stream))  # it has begun, and drips on
        with pytest.raises(openai.RateLimitError) as raised:
            c.chat.completions.create(model="x-ok", messages=HI)
        assert "1 request at once" in raised.value.message
        # Another principal is not held up by this one's stream.
        assert openai_client(quota_daemon, key=KEYS["carol"]).models.list().data
    finally:
        list(stream)
    for _ in range(50):  # the place is given back as the response ends
        try:
            assert c.chat.completions.create(model="x-ok", messages=HI).choices
            break
        except openai.RateLimitError:
            time.sleep(0.1)
    else:
        raise AssertionError("the stream's place was never given back")


def test_quota_overrides_are_checked_at_start(tmp_path):
    bad = CONFIG.replace("max_concurrent = 2", "max_concurrent = -1")
    d = Daemon(write_config(tmp_path / "loom.toml", bad), tmp_path / "data")
    with pytest.raises(Exception, match="max_concurrent"):
        d.start()


def test_tokens_per_minute_count_streams_and_every_choice(quota_daemon):
    d = quota_daemon
    # What one answer costs, asked by a principal with no token or request quota.
    one = openai_client(d, key=KEYS["slow"]).chat.completions.create(model="x-ok", messages=HI, max_tokens=8).usage
    dave = openai_client(d, key=KEYS["dave"])
    first = dave.chat.completions.with_raw_response.create(model="x-ok", messages=HI, n=4, max_tokens=8)
    assert first.headers["x-ratelimit-limit-tokens"] == "200"
    assert first.headers["x-ratelimit-remaining-tokens"] == "200"
    # Four choices are four answers' tokens: the next request's headers say so.
    second = dave.chat.completions.with_raw_response.create(model="x-ok", messages=HI, max_tokens=8, stream=True)
    used = 200 - int(second.headers["x-ratelimit-remaining-tokens"])
    assert used >= 4 * one.completion_tokens + one.prompt_tokens, (used, one)
    list(second.parse())  # a stream that asked for no usage is counted all the same
    third = dave.chat.completions.with_raw_response.create(model="x-ok", messages=HI, max_tokens=8)
    assert 200 - int(third.headers["x-ratelimit-remaining-tokens"]) >= used + one.total_tokens
    # Streams until the window is full; then a 429 that says so.
    with pytest.raises(openai.RateLimitError) as raised:
        for _ in range(200 // one.total_tokens + 2):
            list(dave.chat.completions.create(model="x-ok", messages=HI, max_tokens=8, stream=True))
    assert "200 tokens per minute" in raised.value.message
    headers = raised.value.response.headers
    assert headers["x-ratelimit-remaining-tokens"] == "0" and int(headers["retry-after"]) >= 1
