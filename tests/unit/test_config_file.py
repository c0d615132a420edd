"""The user config: written from the packaged default on first run; [[models]] edits keep the rest."""

from __future__ import annotations

import tomllib

import pytest
from loom.daemon import config_file
from loom.daemon.config import DEFAULT_CONFIG, load_config
from loom.sdk.errors import ConfigError

from tests.conftest import ROOT


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    return tmp_path


def test_the_packaged_default_is_the_root_plugins_toml():
    assert config_file.packaged_default_text() == (ROOT / "plugins.toml").read_text()
    assert DEFAULT_CONFIG.read_text() == (ROOT / "plugins.toml").read_text()


def test_first_run_writes_the_user_config_with_its_comments(home):
    path, created = config_file.ensure_config()
    assert created and path == home / "config" / "loom" / "plugins.toml"
    text = path.read_text()
    assert text.startswith(config_file.USER_HEADER)
    assert text.endswith(config_file.packaged_default_text())
    assert "# API keys are never written inline" in text
    assert load_config().models[0].id == "smollm2-135m"  # load_config() reads the user config
    # A second run keeps the user's edits.
    path.write_text(text.replace('log_level = "info"', 'log_level = "debug"'))
    assert config_file.ensure_config() == (path, False)
    assert load_config().daemon.log_level == "debug"


def test_a_named_config_is_never_created(home, monkeypatch):
    missing = home / "nope.toml"
    assert config_file.ensure_config(missing) == (missing, False)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(missing)
    monkeypatch.setenv("LOOM_CONFIG", str(missing))
    assert config_file.ensure_config() == (missing, False)
    assert not missing.exists()
    assert not (home / "config").exists()


SMALL = """\
# my config
[daemon]
port = 1234  # not the default

[[models]]   # the first one
id = "a"
provider = "mock"
"""


@pytest.mark.parametrize("text", [SMALL, (ROOT / "plugins.toml").read_text(), "[daemon]\nport = 1\n"])
def test_adding_then_removing_a_model_gives_back_the_same_file(text):
    model = {"id": "new", "provider": "llamacpp", "capabilities": ["chat"], "options": {"path": "/m.gguf"}}
    added = config_file.with_model(text, model, "added by a test")
    assert added.startswith(text.rstrip("\n"))  # nothing before it moved or lost its comments
    assert "[[models]] # added by a test" in added
    assert tomllib.loads(added)["models"][-1] == model
    assert config_file.model_ids(added)[-1] == "new"
    assert config_file.without_model(added, "new") == text


def test_removing_keeps_the_comments_of_the_others():
    text = config_file.with_model(SMALL, {"id": "b", "provider": "mock"})
    left = config_file.without_model(text, "a")
    assert "# my config" in left and "port = 1234  # not the default" in left
    assert [m["id"] for m in tomllib.loads(left)["models"]] == ["b"]


def test_an_inline_models_array_keeps_its_style():
    text = 'models = [{ id = "a", provider = "mock" }]\n'
    added = config_file.with_model(text, {"id": "b", "provider": "mock"})
    assert "[[models]]" not in added
    assert [m["id"] for m in tomllib.loads(added)["models"]] == ["a", "b"]


def test_bad_toml_and_unknown_ids_are_config_errors():
    with pytest.raises(ConfigError, match="invalid TOML"):
        config_file.with_model("[daemon\n", {"id": "x", "provider": "mock"}, source="f.toml")
    with pytest.raises(ConfigError, match="no \\[\\[models\\]\\] entry with id 'zz'"):
        config_file.without_model(SMALL, "zz")


def test_write_atomic_keeps_the_mode(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("a = 1\n")
    path.chmod(0o600)
    config_file.write_atomic(path, "a = 2\n")
    assert path.read_text() == "a = 2\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]
