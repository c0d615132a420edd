"""The configuration example in the README decodes, so it stays true as the config grows."""

from __future__ import annotations

import re
import tomllib

from loom.daemon.config import check_config, decode_config

from tests.conftest import ROOT


def test_readme_config_example_decodes(monkeypatch):
    monkeypatch.setenv("LOOM_API_KEY", "example-key")
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Configuration.*?```toml\n(.*?)```", text, re.S).group(1)
    config = decode_config(tomllib.loads(block), "README")
    check_config(config)
    assert config.scheduler.devices["cpu"].budget == "8GB"
    assert config.models[0].fallbacks == ["remote-chat"]


def test_the_ray_guides_config_decodes():
    text = (ROOT / "docs" / "ray.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    config = decode_config(tomllib.loads(block), "docs/ray.md")
    check_config(config)
    assert config.scheduler.executor == "ray" and config.scheduler.ray.address == "auto"
    by_id = {m.id: m for m in config.models}
    assert by_id["llama-70b"].ray.node == "gpu-b" and by_id["llama-70b"].ray.resources == {"big_gpu": 1}
    assert by_id["sd-turbo"].ray.num_gpus == 0.5
