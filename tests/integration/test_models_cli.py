"""``loom models`` through the real ``loom`` command: a running daemon takes added models at once
(served to the ``openai`` client), removed ones are gone, hand edits reload, failures change
nothing; with no daemon the config file is edited directly."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.cli_support import copy_gguf, loom, sandbox

CONFIG = """\
# My models. This comment stays put whatever `loom models` does.
[daemon]
host = "127.0.0.1"

[routes]
chat = "mock-chat"   # the pipelines' default

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat", "completion"]
"""


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return copy_gguf(tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models-live")
    config = write_config(tmp / "loom.toml", CONFIG)
    daemon = Daemon(config, tmp / "data").start()
    yield daemon
    daemon.stop()


def env_for(daemon, tmp_path):
    return sandbox(tmp_path, url=daemon.url)


def ids(daemon) -> list[str]:
    return [m["id"] for m in httpx.get(f"{daemon.url}/v1/models").json()["data"]]


def chat(client, model: str) -> str:
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, seed=1, temperature=0
    )
    return r.choices[0].message.content


def test_a_gguf_added_to_a_running_daemon_serves_survives_a_restart_and_goes(live, gguf, tmp_path):
    env = env_for(live, tmp_path)
    original = live.config.read_text()
    r = loom("models", "add", str(gguf), "--id", "tiny-gguf", "-o", "n_ctx=512", "--alias", "tiny", env=env)
    assert r.returncode == 0, r.stderr
    assert "added tiny-gguf (llamacpp: chat, completion, embedding)" in r.stdout
    assert f"serving now at {live.url}" in r.stdout

    client = openai_client(live, timeout=120)
    assert chat(client, "tiny-gguf").strip()
    assert chat(client, "tiny").strip()  # the alias
    text = live.config.read_text()
    assert text.startswith(original)  # appended; the comments and entries before it untouched
    assert f"# added by `loom models add` from {gguf}" in text

    listing = json.loads(loom("models", "ls", "--json", env=env).stdout)
    record = next(m for m in listing["models"] if m["id"] == "tiny-gguf")
    assert listing["config"] == str(live.config.resolve()) and listing["daemon"] == live.url
    assert record["provider"] == "llamacpp" and record["capabilities"] == ["chat", "completion", "embedding"]
    assert record["size"] == gguf.stat().st_size and record["path"] == str(gguf)
    assert record["loaded"] is True and record["footprint"] > 0
    table = loom("models", "ls", env=env).stdout
    assert "tiny-gguf" in table and "loaded (cpu" in table and "93.8 MiB" in table
    show = loom("models", "show", "tiny", env=env)
    assert "llama, 135M parameters, Q4_1" in show.stdout and '"n_ctx": 512' in show.stdout

    live.restart()  # the model is in the config file now
    assert chat(openai_client(live, timeout=120), "tiny-gguf").strip()

    r = loom("models", "rm", "tiny-gguf", env=env)
    assert r.returncode == 0, r.stderr
    with pytest.raises(openai.NotFoundError):
        chat(client, "tiny-gguf")
    assert live.config.read_text() == original
    assert "tiny-gguf" not in ids(live)


def fails(r, *parts: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    for part in parts:
        assert part in r.stderr, r.stderr


def test_failed_adds_and_removes_change_nothing(live, gguf, tmp_path):
    env = env_for(live, tmp_path)
    before, models = live.config.read_bytes(), ids(live)
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just text")
    odd = tmp_path / "odd-model"
    odd.mkdir()
    (odd / "config.json").write_text('{"architectures": ["BertForTokenClassification"], "model_type": "bert"}')
    fails(loom("models", "add", str(tmp_path / "gone.gguf"), env=env), "gone.gguf: no such file or folder; expected")
    fails(loom("models", "add", str(not_gguf), env=env), f"{not_gguf} is not a GGUF file", "expected a llama.cpp model")
    fails(
        loom("models", "add", str(odd), env=env),
        f"{odd}/config.json declares architectures [BertForTokenClassification]",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(loom("models", "add", str(empty), env=env), f"{empty} holds no model Loom recognises")
    fails(loom("models", "add", str(gguf), "--id", "mock-chat", env=env), "a model named 'mock-chat' already exists")
    fails(
        loom("models", "add", str(gguf), "--provider", "nope", env=env),
        "no provider named 'nope'",
        "nothing was changed",
    )
    fails(loom("models", "add", str(gguf), "-o", "n_ctx=1", env=env), "n_ctx must be at least 16")
    fails(
        loom("models", "rm", "mock-chat", env=env), "$.routes.chat: no model named 'mock-chat'", "nothing was changed"
    )
    fails(loom("models", "rm", "no-such-model", env=env), "The model 'no-such-model' does not exist")
    assert live.config.read_bytes() == before
    assert ids(live) == models
    # The HTTP answer is OpenAI's error shape with the right status.
    r = httpx.post(f"{live.url}/admin/models", json={"source": str(not_gguf)})
    assert r.status_code == 400 and r.json()["error"]["param"] == "source"
    r = httpx.post(f"{live.url}/admin/models", json={"source": str(gguf), "id": "mock-chat"})
    assert r.status_code == 409
    r = httpx.post(f"{live.url}/admin/models", json={"source": str(gguf), "colour": "red"})
    assert r.status_code == 400 and "colour" in r.json()["error"]["message"]
    assert live.config.read_bytes() == before


def test_hand_edits_are_taken_in_by_reload(live, gguf, tmp_path):
    env = env_for(live, tmp_path)
    original = live.config.read_text()
    live.config.write_text(
        original
        + f'\n[[models]]\nid = "by-hand"\nprovider = "llamacpp"\noptions = {{ path = "{gguf}", n_ctx = 256 }}\n'
    )
    try:
        r = loom("models", "reload", env=env)
        assert r.returncode == 0, r.stderr
        assert "added: by-hand" in r.stdout
        assert chat(openai_client(live, timeout=120), "by-hand").strip()
        live.config.write_text(original.replace('capabilities = ["chat", "completion"]', 'capabilities = ["chat"]'))
        r = loom("models", "reload", env=env)
        assert "removed: by-hand" in r.stdout and "changed: mock-chat" in r.stdout
        assert "by-hand" not in ids(live)
        caps = httpx.get(f"{live.url}/v1/models/mock-chat").json()["capabilities"]
        assert caps == ["chat"]
    finally:
        live.config.write_text(original)
        loom("models", "reload", env=env)


def test_with_no_daemon_the_config_file_is_edited(gguf, tmp_path):
    env = sandbox(tmp_path)  # nothing listens at its LOOM_URL
    r = loom("models", "ls", env=env)
    assert r.returncode == 0, r.stderr
    user_config = tmp_path / "config" / "loom" / "plugins.toml"
    assert not user_config.exists()  # looking writes nothing: the shipped default is listed
    assert "smollm2-135m" in r.stdout and "no daemon running" in r.stdout

    r = loom("models", "add", str(gguf), env=env)
    assert r.returncode == 0, r.stderr
    assert f"wrote the user config {user_config}" in r.stderr  # an edit writes it first
    assert f"added tiny-smol (llamacpp: chat, completion, embedding) to {user_config}" in r.stdout
    listing = json.loads(loom("models", "ls", "--json", env=env).stdout)
    record = next(m for m in listing["models"] if m["id"] == "tiny-smol")
    assert record["size"] == gguf.stat().st_size and "loaded" not in record and listing["daemon"] is None
    fails(loom("models", "add", str(gguf), env=env), "a model named 'tiny-smol' already exists")
    assert loom("models", "rm", "tiny-smol", env=env).returncode == 0
    original = user_config.read_bytes()
    fails(loom("models", "rm", "smollm2-135m", env=env), "$.routes.chat: no model named 'smollm2-135m'")
    fails(loom("models", "show", "nothing-here", env=env), "no model named 'nothing-here'")
    assert user_config.read_bytes() == original


def test_an_admin_key_is_needed_when_keys_are_set(gguf, tmp_path):
    config = write_config(
        tmp_path / "keyed.toml",
        CONFIG.replace(
            '[daemon]\nhost = "127.0.0.1"\n',
            '[daemon]\nhost = "127.0.0.1"\n[[daemon.api_keys]]\nkey = { env = "T_ADMIN" }\nrole = "admin"\n',
        ),
    )
    daemon = Daemon(config, tmp_path / "data", env={"T_ADMIN": "admin-secret"}).start()
    try:
        env = env_for(daemon, tmp_path)
        fails(loom("models", "add", str(gguf), env=env), "set LOOM_API_KEY")
        r = loom("models", "add", str(gguf), "--id", "keyed", env={**env, "LOOM_API_KEY": "admin-secret"})
        assert r.returncode == 0, r.stderr
        assert "keyed" in [m.id for m in openai_client(daemon, key="admin-secret").models.list().data]
    finally:
        daemon.stop()
