"""Config decoding: strict, with the key path and the reason in every error."""

from __future__ import annotations

import pytest
from loom.daemon.config import DEFAULT_CONFIG, load_config, parse_duration, parse_size
from loom.sdk.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "loom.toml"
    path.write_text(text)
    return path


def test_shipped_config_decodes():
    config = load_config(DEFAULT_CONFIG)
    ids = [m.id for m in config.models]
    assert "smollm2-135m" in ids
    assert config.routes.chat == "smollm2-135m"


def test_unknown_key_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown field `prot`.*\$\.daemon"):
        load_config(write(tmp_path, "[daemon]\nprot = 1\n"))


def test_wrong_type_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"Expected `int`, got `str` - at `\$\.daemon\.port`"):
        load_config(write(tmp_path, '[daemon]\nport = "eighty"\n'))


def test_model_wrong_type(tmp_path):
    text = '[[models]]\nid = "m"\nprovider = "mock"\npin = "yes"\n'
    with pytest.raises(ConfigError, match=r"\$\.models\[0\]\.pin"):
        load_config(write(tmp_path, text))


def test_inline_secret_refused(tmp_path):
    text = '[[daemon.api_keys]]\nkey = "sk-inline"\n'
    with pytest.raises(ConfigError, match=r"daemon\.api_keys\[0\]\.key"):
        load_config(write(tmp_path, text))


def test_missing_secret_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOM_TEST_NOPE", raising=False)
    text = '[[daemon.api_keys]]\nkey = { env = "LOOM_TEST_NOPE" }\n'
    with pytest.raises(ConfigError, match="LOOM_TEST_NOPE is not set"):
        load_config(write(tmp_path, text))


def test_non_loopback_bind_needs_a_key(tmp_path):
    with pytest.raises(ConfigError, match="without an API key"):
        load_config(write(tmp_path, '[daemon]\nhost = "0.0.0.0"\n'))


def test_flags_override_file(tmp_path):
    config = load_config(write(tmp_path, "[daemon]\nport = 1234\n"), port=4321, host=None)
    assert config.daemon.port == 4321


def test_ray_flag_makes_ray_the_executor_and_ray_client_is_refused(tmp_path):
    config = load_config(write(tmp_path, '[scheduler.ray]\npoll = "1s"\n'), ray="10.0.0.1:6379")
    assert config.scheduler.executor == "ray" and config.scheduler.ray.address == "10.0.0.1:6379"
    assert config.scheduler.ray.poll == "1s"
    with pytest.raises(ConfigError, match=r"\$\.scheduler\.ray\.address: Ray Client \(ray://\) is not supported"):
        load_config(write(tmp_path, ""), ray="ray://10.0.0.1:10001")


def test_loom_config_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_CONFIG", str(write(tmp_path, "[daemon]\nport = 2222\n")))
    assert load_config().daemon.port == 2222


def test_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[daemon\n"))


@pytest.mark.parametrize("text,expected", [("8GB", 8e9), ("512MiB", 512 * 2**20), ("1.5g", 1.5e9), ("100", 100)])
def test_parse_size(text, expected):
    assert parse_size(text) == int(expected)


def test_parse_size_percent():
    assert parse_size("50%", allow_percent=True, total=1000) == 500
    with pytest.raises(ConfigError):
        parse_size("lots")


@pytest.mark.parametrize("value,expected", [("5m", 300), ("30s", 30), (0, 0), (-1, None), ("never", None)])
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


def test_bad_keep_alive_names_model(tmp_path):
    text = '[[models]]\nid = "m"\nprovider = "mock"\nkeep_alive = "soon"\n'
    with pytest.raises(ConfigError, match=r"\$\.models\[0\]\.keep_alive"):
        load_config(write(tmp_path, text))
