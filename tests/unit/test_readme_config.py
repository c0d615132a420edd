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
