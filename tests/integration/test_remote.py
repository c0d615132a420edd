"""Remote providers end to end: a front Loom whose models live on an upstream Loom (the mock),
spoken to over real HTTP with the official `openai` package.

The upstream wants an API key; the front reads it from the environment. Instances with a wrong
key, an unset key and a dead address sit beside the good one, so error mapping, health, fallback
and key hygiene are all checked against the same two daemons.
"""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import MOCK_CONFIG, Daemon, free_port, openai_client, write_config

UP_KEY = "up-secret-Key0123456789abcdef"
WRONG_KEY = "sk-wrong-Secret0123456789abcdef"
SECRETS = (UP_KEY, WRONG_KEY)

UPSTREAM_CONFIG = (
    MOCK_CONFIG.replace(
        '[daemon]\nhost = "127.0.0.1"\n',
        '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_UP_KEY" }\n',
    )
    + """
[[models]]
id = "mock-slow"
provider = "mock"
capabilities = ["chat"]
options = { latency_ms = 600 }
concurrency = 4
"""
)

FRONT_CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "local-chat"

[plugins.openai]
health_interval = 1

[plugins.openai.instances.up]
base_url = "{up}/v1"
api_key = {{ env = "T_UP_KEY" }}
timeout = 10
retries = 1
model_map = {{ remote-chat = "mock-chat" }}

[plugins.openai.instances.wrongkey]
base_url = "{up}/v1"
api_key = {{ env = "T_WRONG_KEY" }}

[plugins.openai.instances.nokey]
base_url = "{up}/v1"
api_key = {{ env = "T_UNSET_KEY" }}

[plugins.openai.instances.dead]
base_url = "http://127.0.0.1:{dead}/v1"
timeout = 2
retries = 1

[[models]]
id = "local-chat"
provider = "mock"
capabilities = ["chat", "completion", "embedding"]

[[models]]
id = "remote-chat"
provider = "openai"
options = {{ instance = "up" }}
capabilities = ["chat", "completion", "embedding"]

[[models]]
id = "remote-image"
provider = "openai"
options = {{ instance = "up", model = "mock-image" }}
capabilities = ["image"]

[[models]]
id = "remote-image-url"
provider = "openai"
options = {{ instance = "up", model = "mock-image", image_response_format = "url" }}
capabilities = ["image"]

[[models]]
id = "remote-vision"
provider = "openai"
options = {{ instance = "up", model = "mock-vision", score_format = "json_schema" }}
capabilities = ["vision", "chat", "translation"]

[[models]]
id = "remote-nochat"
provider = "openai"
options = {{ instance = "up", model = "mock-image" }}
capabilities = ["chat"]

[[models]]
id = "remote-ghost"
provider = "openai"
options = {{ instance = "up", model = "ghost" }}
capabilities = ["chat"]

[[models]]
id = "remote-slow"
provider = "openai"
options = {{ instance = "up", model = "mock-slow" }}
capabilities = ["chat"]
concurrency = 1
max_queue = 1
fallbacks = ["local-chat"]

[[models]]
id = "remote-wrongkey"
provider = "openai"
options = {{ instance = "wrongkey", model = "mock-chat" }}
capabilities = ["chat"]

[[models]]
id = "remote-nokey"
provider = "openai"
options = {{ instance = "nokey", model = "mock-chat" }}
capabilities = ["chat"]

[[models]]
id = "remote-nokey-fb"
provider = "openai"
options = {{ instance = "nokey", model = "mock-chat" }}
capabilities = ["chat"]
fallbacks = ["local-chat"]

[[models]]
id = "remote-dead"
provider = "openai"
options = {{ instance = "dead", model = "mock-chat" }}
capabilities = ["chat"]
fallbacks = ["local-chat"]

[[models]]
id = "remote-dead-alone"
provider = "openai"
options = {{ instance = "dead", model = "mock-chat" }}
capabilities = ["chat"]
"""

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote-up")
    d = Daemon(write_config(tmp / "up.toml", UPSTREAM_CONFIG), tmp / "data", env={"T_UP_KEY": UP_KEY}).start()
    yield d
    d.stop()


def front_daemon(upstream: Daemon, tmp) -> Daemon:
    config = FRONT_CONFIG.format(up=upstream.url, dead=free_port())
    env = {"T_UP_KEY": UP_KEY, "T_WRONG_KEY": WRONG_KEY}
    return Daemon(write_config(tmp / "front.toml", config), tmp / "data", env=env)


@pytest.fixture(scope="module")
def front(upstream, tmp_path_factory):
    d = front_daemon(upstream, tmp_path_factory.mktemp("remote-front")).start()
    yield d
    d.stop()
    log = d.output()
    for secret in SECRETS:  # keys never reach the log, whatever happened above
        assert secret not in log


@pytest.fixture(scope="module")
def client(front):
    return openai_client(front)


@pytest.fixture(scope="module")
def direct(upstream):
    return openai_client(upstream, key=UP_KEY)


def served(raw) -> tuple[str, str]:
    return raw.headers["x-loom-model"], raw.headers["x-loom-provider"]


def png(color=(200, 30, 30), size=(64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def check_now(front: Daemon) -> dict:
    r = httpx.post(f"{front.url}/admin/providers/check", timeout=30)
    r.raise_for_status()
    return r.json()


# --- the capabilities, through the front ------------------------------------------------------


def test_chat_is_the_upstream_answer_with_usage_and_provenance(client, direct):
    raw = client.chat.completions.with_raw_response.create(model="remote-chat", messages=HELLO, seed=3, max_tokens=12)
    assert served(raw) == ("remote-chat", "openai")
    got = raw.parse()
    want = direct.chat.completions.create(model="mock-chat", messages=HELLO, seed=3, max_tokens=12)
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.choices[0].finish_reason == want.choices[0].finish_reason
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (
        want.usage.prompt_tokens,
        want.usage.completion_tokens,
    )
    assert got.model == "remote-chat"


def test_streaming_passes_chunks_through_and_keeps_usage(client, direct):
    def collect(c, model):
        text, usage, finish, chunks = [], None, None, 0
        for chunk in c.chat.completions.create(
            model=model, messages=HELLO, seed=5, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                chunks += bool(choice.delta.content)
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        return "".join(text), usage, finish, chunks

    text, usage, finish, chunks = collect(client, "remote-chat")
    want_text, want_usage, want_finish, want_chunks = collect(direct, "mock-chat")
    assert (text, finish) == (want_text, want_finish)
    assert chunks == want_chunks > 3  # chunk by chunk, not one blob
    assert (usage.prompt_tokens, usage.completion_tokens) == (want_usage.prompt_tokens, want_usage.completion_tokens)


def test_completions_plain_and_streamed(client, direct):
    got = client.completions.create(model="remote-chat", prompt="Once upon", max_tokens=8, seed=2)
    want = direct.completions.create(model="mock-chat", prompt="Once upon", max_tokens=8, seed=2)
    assert got.choices[0].text == want.choices[0].text and got.usage.completion_tokens == 8
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(model="remote-chat", prompt="Once upon", max_tokens=8, seed=2, stream=True)
        if c.choices
    )
    assert streamed == want.choices[0].text


def test_embeddings_match_the_upstream(client, direct):
    got = client.embeddings.create(model="remote-chat", input=["red fox", "blue sea"])
    want = direct.embeddings.create(model="mock-chat", input=["red fox", "blue sea"])
    assert np.allclose([d.embedding for d in got.data], [d.embedding for d in want.data], atol=1e-6)
    assert got.usage.prompt_tokens == want.usage.prompt_tokens


@pytest.mark.parametrize("model", ["remote-image", "remote-image-url"])
def test_images_arrive_as_asked_whatever_the_upstream_answered(client, direct, front, model):
    want = direct.images.generate(model="mock-image", prompt="a red fox", size="256x256", n=2, extra_body={"seed": 4})
    got = client.images.generate(model=model, prompt="a red fox", size="256x256", n=2, extra_body={"seed": 4})
    # remote-image-url: the upstream answered with URLs on its own (keyed) /v1/files; Loom fetched them.
    assert [d.b64_json for d in got.data] == [d.b64_json for d in want.data]
    as_url = client.images.generate(model=model, prompt="a red fox", size="256x256", response_format="url")
    assert as_url.data[0].url.startswith(front.url)
    image = Image.open(io.BytesIO(httpx.get(as_url.data[0].url).content))
    assert image.size == (256, 256)


def test_vision_chat_forwards_image_parts(client, direct):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png()}"}},
            ],
        }
    ]
    got = client.chat.completions.with_raw_response.create(model="remote-vision", messages=messages, seed=1)
    want = direct.chat.completions.create(model="mock-vision", messages=messages, seed=1)
    assert served(got)[0] == "remote-vision"
    assert got.parse().choices[0].message.content == want.choices[0].message.content
    assert "64x64" in want.choices[0].message.content  # the upstream did see the image


def test_describe_score_and_translate_through_prompts(front):
    image = png((20, 40, 220))
    r = httpx.post(
        f"{front.url}/v1/vision/describe", json={"model": "remote-vision", "image": image, "detail": "brief"}
    )
    assert r.status_code == 200 and "64x64" in r.json()["description"]
    assert r.headers["x-loom-provider"] == "openai"

    r = httpx.post(f"{front.url}/v1/vision/score", json={"model": "remote-vision", "image": image, "text": "blue"})
    body = r.json()
    assert r.status_code == 200 and 0 <= body["clip"] <= 1 and 0 <= body["aesthetic"] <= 10

    r = httpx.post(
        f"{front.url}/v1/translations/text",
        json={"model": "remote-vision", "text": ["good morning", " "], "source": "en", "target": "fr"},
    )
    body = r.json()
    assert r.status_code == 200 and len(body["translations"]) == 2
    assert "good morning" in body["translations"][0] and body["translations"][1] == " "


# --- the upstream's errors, mapped ------------------------------------------------------------


def test_upstream_400_stays_a_400_with_its_message(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="remote-nochat", messages=HELLO)
    assert "does not support chat" in e.value.message
    assert e.value.code == "capability_not_supported"


def test_a_model_the_upstream_lacks_is_a_502(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="remote-ghost", messages=HELLO)
    assert e.value.status_code == 502 and "404" in e.value.message and "ghost" in e.value.message


def test_a_refused_key_is_a_401_naming_the_variable_and_never_the_key(client):
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="remote-wrongkey", messages=HELLO)
    assert "T_WRONG_KEY" in e.value.message
    text = json.dumps(e.value.body) + e.value.response.text
    assert WRONG_KEY not in text and UP_KEY not in text and "sk-wrong" not in text


def test_an_unset_key_is_a_401_naming_the_variable_and_does_not_stop_start_up(client):
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="remote-nokey", messages=HELLO)
    assert "T_UNSET_KEY" in e.value.message and e.value.code == "provider_key_missing"
    # With a fallback, the model with no key is routed around from the first request.
    raw = client.chat.completions.with_raw_response.create(model="remote-nokey-fb", messages=HELLO)
    assert served(raw) == ("local-chat", "mock")


# --- health, fallback -------------------------------------------------------------------------


def test_admin_providers_shows_health_and_never_a_key(front):
    body = check_now(front)
    upstreams = {u["instance"]: u for u in body["upstreams"]}
    assert {k: u["status"] for k, u in upstreams.items()} == {
        "up": "ok",
        "wrongkey": "auth_failed",
        "nokey": "no_key",
        "dead": "down",
    }
    up = upstreams["up"]
    assert up["api_key"] == {"env": "T_UP_KEY", "set": True} and up["healthy"] and up["latency_ms"] >= 0
    assert {"id": "remote-ghost", "remote_id": "ghost", "listed": False} in up["models"]
    assert {"id": "remote-chat", "remote_id": "mock-chat", "listed": True} in up["models"]
    assert "T_UNSET_KEY" in upstreams["nokey"]["error"]
    models = {m["id"]: m for m in body["models"]}
    assert models["remote-dead"]["healthy"] is False and models["local-chat"]["remote"] is False
    text = httpx.get(f"{front.url}/admin/providers").text
    for secret in SECRETS:
        assert secret not in text


def test_an_unhealthy_upstream_is_routed_around(client, front):
    check_now(front)
    raw = client.chat.completions.with_raw_response.create(model="remote-dead", messages=HELLO)
    assert served(raw) == ("local-chat", "mock")
    stream = client.chat.completions.with_raw_response.create(model="remote-dead", messages=HELLO, stream=True)
    assert served(stream)[0] == "local-chat"
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    # Alone, the dead upstream is a clear 502 after its retries, not a hang.
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="remote-dead-alone", messages=HELLO)
    assert e.value.status_code == 502 and "dead" in e.value.message and "after 2 tries" in e.value.message


def test_a_full_queue_falls_back(client):
    # remote-slow: one at a time, one waiting; the upstream takes 0.6 s per answer.
    def one(_):
        raw = client.chat.completions.with_raw_response.create(model="remote-slow", messages=HELLO)
        return served(raw)[0]

    with ThreadPoolExecutor(4) as pool:
        got = sorted(pool.map(one, range(4)))
    assert got.count("remote-slow") == 2 and got.count("local-chat") == 2, got


# --- runtime switching ------------------------------------------------------------------------


def test_runtime_switch_by_model_and_capability_survives_a_restart(upstream, tmp_path):
    d = front_daemon(upstream, tmp_path).start()
    try:
        c = openai_client(d)

        def who(model: str) -> str:
            return served(c.chat.completions.with_raw_response.create(model=model, messages=HELLO))[0]

        def switch(**body) -> httpx.Response:
            return httpx.post(f"{d.url}/admin/providers/switch", json=body)

        assert who("local-chat") == "local-chat"
        r = switch(model="local-chat", to="remote-chat")
        assert r.status_code == 200, r.text
        assert r.json()["served_by"] == {"chat": "remote-chat", "completion": "remote-chat", "embedding": "remote-chat"}
        assert who("local-chat") == "remote-chat"
        assert switch(capability="chat", to="remote-vision").status_code == 200
        assert who("remote-chat") == "remote-vision"
        assert who("local-chat") == "remote-chat"  # the model switch wins
        assert (d.data_dir / "routing.json").exists()

        d.restart()
        assert who("local-chat") == "remote-chat" and who("remote-chat") == "remote-vision"
        body = httpx.get(f"{d.url}/admin/providers").json()
        assert body["switches"] == {"models": {"local-chat": "remote-chat"}, "capabilities": {"chat": "remote-vision"}}
        assert body["routes"]["chat"] == "remote-vision"

        assert switch(model="local-chat", to=None).status_code == 200
        assert switch(model="chat", to=None).status_code == 200
        assert who("local-chat") == "local-chat" and who("remote-chat") == "remote-chat"

        bad = switch(model="local-chat", to="remote-image")
        assert bad.status_code == 400 and "can do none" in bad.json()["error"]["message"]
        assert switch(model="nothing", to="local-chat").status_code == 404
        assert switch(capability="image", to="local-chat").status_code == 400
        d.restart()
        assert who("local-chat") == "local-chat"
    finally:
        d.stop()


def test_admin_provider_routes_need_an_admin_key(keyed_daemon):
    url = f"{keyed_daemon.url}/admin/providers"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer user-secret-1"}).status_code == 403
    ok = httpx.get(url, headers={"Authorization": "Bearer admin-secret-1"})
    assert ok.status_code == 200 and ok.json()["upstreams"] == []
    switch = httpx.post(
        f"{url}/switch", json={"model": "mock-chat", "to": "mock-vision"}, headers={"x-api-key": "user-secret-1"}
    )
    assert switch.status_code == 403


# --- tools pass through untouched ---------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def _calls(message) -> list[tuple[str, str, str]]:
    return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()]


def test_tools_and_tool_call_deltas_pass_through(client, direct):
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    got = client.chat.completions.create(model="remote-chat", messages=ask, tools=TOOLS, seed=2)
    want = direct.chat.completions.create(model="mock-chat", messages=ask, tools=TOOLS, seed=2)
    assert got.choices[0].finish_reason == "tool_calls" and _calls(got.choices[0].message) == _calls(
        want.choices[0].message
    )
    # Streamed: the upstream's deltas arrive piece by piece and join into the same calls.
    pieces = []
    with client.chat.completions.stream(model="remote-chat", messages=ask, tools=TOOLS, seed=2) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                pieces.append(event.arguments_delta)
        final = stream.get_final_completion()
    assert len(pieces) > 2 and _calls(final.choices[0].message) == _calls(want.choices[0].message)
    # A conversation carrying the calls and their results goes up as it came.
    history = [
        *ask,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [c.model_dump() for c in want.choices[0].message.tool_calls],
        },
        *[{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in want.choices[0].message.tool_calls],
    ]
    answer = client.chat.completions.create(model="remote-chat", messages=history, tools=TOOLS, tool_choice="auto")
    assert "sunny" in answer.choices[0].message.content


def test_a_parameter_the_upstream_refuses_comes_back_as_its_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="remote-chat", messages=HELLO, logprobs=True, extra_body={"top_k": 3})
    assert "logprobs" in e.value.message
