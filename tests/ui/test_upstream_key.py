"""The web UI as seed 004's demo: the start form takes the user's own OpenAI key, checks it at
submit (missing, or not ``sk-...``), and the job's calls use it; the key is never stored or shown.
A real browser against a live daemon whose beam-search models are remote (the fake upstream,
with the GPT-5 family's rules) on an instance that has no key of its own."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.fake_services import FakeServices
from tests.integration.jobs_support import wait

from .conftest import click_and_wait

USER_KEY = "sk-user-FormSecret0123456789"
FIELD = "#key-x-openai-api-key"

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "gpt-5-mini"
image = "gpt-image-1"
vision = "gpt-5-nano"

[plugins.openai.instances.openai]
base_url = "{url}"
user_key_header = "X-OpenAI-API-Key"

[[models]]
id = "gpt-5-mini"
provider = "openai"
capabilities = ["chat", "vision"]

[[models]]
id = "gpt-5-nano"
provider = "openai"
capabilities = ["chat", "vision"]

[[models]]
id = "gpt-image-1"
provider = "openai"
capabilities = ["image"]
options = {{ image_sizes = ["1024x1024"], send_seed = false, image_response_format = "omit" }}
"""


@pytest.fixture(scope="module")
def fake():
    with FakeServices() as services:
        yield services


@pytest.fixture(scope="module")
def remote_ui(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-byok")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG.format(url=fake.url)), tmp / "data").start()
    yield d
    d.stop()


def fill_small(page) -> None:
    page.fill("#f-prompt", "a lighthouse at dusk")
    for name, value in {"beam_width": "2", "keep_top": "1", "iterations": "1"}.items():
        page.fill(f"#f-{name}", value)


def test_the_form_checks_the_users_key_and_the_job_uses_it(page, remote_ui, fake):
    api = httpx.Client(base_url=remote_ui.url, timeout=30)
    page.goto(f"{remote_ui.url}/ui/pipelines/beam_search")
    assert page.get_attribute(FIELD, "type") == "password"
    assert "gpt-5-mini" in page.locator(".upstream-key small").inner_text()

    fill_small(page)
    click_and_wait(page, "#pipeline-form button[type=submit]")
    assert "Missing API key" in page.locator("#form-error").inner_text()
    assert page.locator(".upstream-key.invalid").count() == 1

    fill_small(page)
    page.fill(FIELD, "not-an-openai-key-123")
    click_and_wait(page, "#pipeline-form button[type=submit]")
    assert "must start with 'sk-'" in page.locator("#form-error").inner_text()
    # Never shown back: the field comes back empty and the page does not hold the key.
    assert page.input_value(FIELD) == "" and "not-an-openai-key-123" not in page.content()
    assert api.get("/v1/jobs").json()["data"] == []

    fill_small(page)
    page.fill(FIELD, USER_KEY)
    page.click("#pipeline-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    done = wait(api, job_id, timeout=60)
    assert done["state"] == "succeeded", done["error"]
    assert done["upstream_keys"] == ["x-openai-api-key"]
    calls = [s for s in fake.seen if s.auth]
    assert calls and all(s.auth == f"Bearer {USER_KEY}" for s in calls)
    assert all(s.status == 200 for s in calls)
    # Stored nowhere, logged nowhere.
    assert USER_KEY not in remote_ui.output()
    for path in remote_ui.data_dir.rglob("*"):
        if path.is_file():
            assert USER_KEY.encode() not in path.read_bytes(), path
    api.close()
