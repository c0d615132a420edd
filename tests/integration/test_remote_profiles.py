"""Remote models as they are: the openai provider's parameter profiles, against a fake upstream
(``fake_services``) that enforces OpenAI's documented rules for the GPT-5 family and o-series
(``max_tokens`` refused, a non-default ``temperature`` refused, reasoning counted in
``max_completion_tokens``) and a ``strict-llm`` that refuses what no profile foresees."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.fake_services import FakeServices, png
from tests.integration.jobs_support import wait

KEY = "sk-operator-Secret0123456789"

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "gpt-5-mini"
vision = "gpt-5-nano"
translation = "gpt-5-mini"

[plugins.openai.instances.openai]
base_url = "{url}"
api_key = {{ env = "T_OPENAI_KEY" }}

[[models]]
id = "gpt-5-mini"
provider = "openai"
capabilities = ["chat", "vision", "translation"]

[[models]]
id = "gpt-5-nano"
provider = "openai"
capabilities = ["chat", "vision"]

[[models]]
id = "o3"
provider = "openai"
capabilities = ["chat"]

[[models]]
id = "strict-llm"
provider = "openai"
capabilities = ["chat"]

[[models]]
id = "gpt-4o-mini"
provider = "openai"
capabilities = ["chat"]

# The profile says "standard": the service's refusal of max_tokens is learnt.
[[models]]
id = "nano-as-standard"
provider = "openai"
capabilities = ["chat", "vision"]
options = {{ model = "gpt-5-nano", profile = "standard" }}

# Overrides: no room for reasoning, and the effort the fake spends most on.
[[models]]
id = "mini-tight"
provider = "openai"
capabilities = ["chat"]
options = {{ model = "gpt-5-mini", parameters = {{ reasoning_effort = "high", reasoning_tokens = 0 }} }}
"""


@pytest.fixture(scope="module")
def fake():
    with FakeServices() as services:
        yield services


@pytest.fixture(scope="module")
def daemon(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("profiles")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG.format(url=fake.url)), tmp / "data", env={"T_OPENAI_KEY": KEY})
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    return openai_client(daemon, timeout=60)


def last_chat(fake: FakeServices, model: str):
    return [s for s in fake.requests("/chat/completions") if s.body.get("model") == model][-1]


def chats_since(fake: FakeServices, before: int):
    return fake.requests("/chat/completions")[before:]


def run_job(daemon: Daemon, pipeline: str, params: dict) -> dict:
    with httpx.Client(base_url=daemon.url, timeout=30) as http:
        r = http.post(f"/v1/pipelines/{pipeline}", json=params)
        assert r.status_code == 202, r.text
        return wait(http, r.json()["id"], timeout=60)


# --- a client's calls: as sent, max_tokens renamed ---------------------------------------------


def test_a_clients_max_tokens_becomes_max_completion_tokens(client, fake):
    r = client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=1000
    )
    assert r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    sent = last_chat(fake, "gpt-5-mini")
    assert sent.status == 200 and sent.body["max_completion_tokens"] == 1000 and "max_tokens" not in sent.body
    # A client's call goes as it was sent: no effort or reasoning room added.
    assert "reasoning_effort" not in sent.body


def test_a_clients_stream_is_renamed_too(client, fake):
    chunks = list(
        client.chat.completions.create(
            model="o3",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=800,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    sent = last_chat(fake, "o3")
    assert sent.status == 200 and sent.body["max_completion_tokens"] == 800 and "max_tokens" not in sent.body


def test_reasoning_effort_and_verbosity_pass_through(client, fake):
    client.chat.completions.create(
        model="gpt-5-mini",
        messages=[{"role": "user", "content": "hello"}],
        reasoning_effort="minimal",
        verbosity="low",
    )
    sent = last_chat(fake, "gpt-5-mini")
    assert sent.body["reasoning_effort"] == "minimal" and sent.body["verbosity"] == "low"


def test_a_client_that_asks_for_a_refused_temperature_gets_the_services_400(client, fake):
    before = len(fake.requests("/chat/completions"))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "hello"}], temperature=0.5
        )
    assert "Only the default (1) value is supported" in e.value.message
    assert e.value.body["param"] == "temperature" and e.value.body["code"] == "unsupported_value"
    assert len(chats_since(fake, before)) == 1  # not retried without it
    # The default value is what the model takes.
    client.chat.completions.create(model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}], temperature=1)


# --- Loom's own calls: only what the model takes -----------------------------------------------


def test_loom_own_calls_send_only_what_the_profile_allows(daemon, fake):
    before = len(fake.requests("/chat/completions"))
    image = "data:image/png;base64," + base64.b64encode(png(64, 64, "a bright sun")).decode()
    story = run_job(daemon, "story", {"prompt": "a fox and a lantern", "seed": 3, "remember": False})
    assert story["state"] == "succeeded", story["error"]
    described = run_job(daemon, "describe", {"image": image, "remember": False})
    assert described["state"] == "succeeded", described["error"]
    translated = run_job(daemon, "translate", {"text": ["Hello", "Good night"], "source": "en", "target": "fr"})
    assert translated["state"] == "succeeded", translated["error"]
    sent = chats_since(fake, before)
    assert sent and all(s.status == 200 for s in sent), [(s.body, s.status) for s in sent if s.status != 200]
    for s in sent:
        assert not {"max_tokens", "temperature", "top_p"} & set(s.body), s.body
        assert s.body["reasoning_effort"] == "low"
    limited = [s for s in sent if "max_completion_tokens" in s.body]
    # The story's limit, with room for the reasoning.
    assert limited and all(s.body["max_completion_tokens"] > 2048 for s in limited)


def test_without_room_for_reasoning_the_answer_is_cut_as_the_real_service_cuts_it(daemon, fake):
    done = run_job(daemon, "story", {"prompt": "a fox", "model": "mini-tight", "max_tokens": 300, "remember": False})
    assert done["state"] == "failed" and "no story" in done["error"]["message"]
    sent = last_chat(fake, "gpt-5-mini")
    assert sent.body["reasoning_effort"] == "high" and sent.body["max_completion_tokens"] == 300


# --- what no profile foresaw -------------------------------------------------------------------


def test_an_unforeseen_refusal_is_retried_once_learnt_and_logged(daemon, fake, client):
    before = len(fake.requests("/chat/completions"))
    done = run_job(daemon, "story", {"prompt": "a fox", "model": "strict-llm", "seed": 11, "remember": False})
    assert done["state"] == "succeeded", done["error"]
    first, retry = chats_since(fake, before)
    assert first.status == 400 and first.body["seed"] == 11
    assert retry.status == 200 and "seed" not in retry.body
    assert "model strict-llm: the service refused 'seed'" in daemon.output()
    # Learnt: the next own call leaves it out at once.
    before = len(fake.requests("/chat/completions"))
    assert (
        run_job(daemon, "story", {"prompt": "an owl", "model": "strict-llm", "seed": 12, "remember": False})["state"]
        == "succeeded"
    )
    (again,) = chats_since(fake, before)
    assert again.status == 200 and "seed" not in again.body
    models = {m["id"]: m for m in httpx.get(f"{daemon.url}/admin/providers").json()["models"]}
    assert models["strict-llm"]["parameters"]["learnt"] == ["seed"]
    assert models["gpt-5-mini"]["parameters"]["family"] == "gpt-5"
    assert "temperature" in models["gpt-5-mini"]["parameters"]["refuses"]
    # A client that asks for it gets the service's 400, unretried.
    before = len(fake.requests("/chat/completions"))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="strict-llm", messages=[{"role": "user", "content": "hi"}], seed=4)
    assert "Unrecognized request argument supplied: seed" in e.value.message
    assert len(chats_since(fake, before)) == 1


def test_loom_additions_to_a_clients_stream_are_dropped_when_refused(client, fake):
    before = len(fake.requests("/chat/completions"))
    chunks = list(
        client.chat.completions.create(model="strict-llm", messages=[{"role": "user", "content": "hello"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    first, retry = chats_since(fake, before)
    assert first.status == 400 and "stream_options" in first.body
    assert retry.status == 200 and "stream_options" not in retry.body


def test_a_refused_max_tokens_is_learnt_as_the_other_name(daemon, fake, client):
    image = "data:image/png;base64," + base64.b64encode(png(64, 64, "dusk")).decode()
    before = len(fake.requests("/chat/completions"))
    done = run_job(daemon, "describe", {"image": image, "model": "nano-as-standard", "remember": False})
    assert done["state"] == "succeeded", done["error"]
    # describe sends no limit: fine as it is. A client's max_tokens is refused once, then renamed.
    r = client.chat.completions.create(
        model="nano-as-standard", messages=[{"role": "user", "content": "hi"}], max_tokens=900
    )
    assert r.choices[0].message.content
    sent = chats_since(fake, before)
    assert [s.status for s in sent][-2:] == [400, 200]
    assert sent[-1].body["max_completion_tokens"] == 900 and "max_tokens" not in sent[-1].body
    client.chat.completions.create(
        model="nano-as-standard", messages=[{"role": "user", "content": "hi"}], max_tokens=900
    )
    assert last_chat(fake, "gpt-5-nano").status == 200


# --- image_to_story: a chat model with vision sees the picture -----------------------------------


def test_image_to_story_gives_a_vision_model_the_picture_and_a_text_model_the_description(daemon, fake):
    image = "data:image/png;base64," + base64.b64encode(png(64, 64, "a harbour")).decode()
    params = {"image": image, "k": 0, "remember": False}
    seeing = run_job(daemon, "image_to_story", {**params, "llm_model": "gpt-5-mini"})
    assert seeing["state"] == "succeeded", seeing["error"]
    assert seeing["result"]["saw_image"] is True
    story = last_chat(fake, "gpt-5-mini").body
    parts = story["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"] and "storyteller" in story["messages"][0]["content"]
    assert seeing["result"]["description"] not in parts[0]["text"]

    reading = run_job(daemon, "image_to_story", {**params, "llm_model": "gpt-4o-mini"})
    assert reading["state"] == "succeeded", reading["error"]
    assert reading["result"]["saw_image"] is False
    user = last_chat(fake, "gpt-4o-mini").body["messages"][1]["content"]
    assert isinstance(user, str) and reading["result"]["description"] in user
