"""`loom plugins` and `loom new-plugin`: what is listed, and a skeleton that passes the kit."""

from __future__ import annotations

import importlib
import json
import sys
import types

import msgspec
import pytest
from loom.daemon.cli import main
from loom.daemon.cli_plugins import format_inventory, inventory, plugin_names, write_plugin
from loom.sdk import Capability, ModelConfig, PluginError, Provider, hookimpl
from loom.sdk.pipelines import Pipeline
from loom.sdk.testing import Settings, Subject, run_checks


class Painter(Provider):
    name = "painter"
    capabilities = frozenset({Capability.IMAGE})

    def generate_images(self, job, ctx):
        return []


class Sketch(Pipeline):
    name = "sketch"
    description = "Draw a sketch"

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        subject: str

    async def run(self, params, ctx):
        return {}


def full_plugin() -> types.ModuleType:
    """A plugin that implements every registration hook."""
    module = types.ModuleType("art_plugin")

    @hookimpl
    def register_providers(register):
        register(Painter)

    @hookimpl
    def register_models(register):
        register(ModelConfig(id="painter-small", provider="painter"))

    @hookimpl
    def register_pipelines(register):
        register(Sketch)

    module.register_providers = register_providers
    module.register_models = register_models
    module.register_pipelines = register_pipelines
    return module


def test_inventory_says_what_each_plugin_registered():
    records = {r["name"]: r for r in inventory(extra_plugins={"art": full_plugin()})}
    art = records["art"]
    assert art["hooks"] == ["register_models", "register_pipelines", "register_providers"]
    assert art["providers"] == [
        {
            "name": "painter",
            "class": f"{__name__}.Painter",
            "capabilities": ["image"],
            "local": True,
            "deterministic": False,
        }
    ]
    assert art["capabilities"] == ["image"]
    assert art["models"] == [{"id": "painter-small", "provider": "painter", "capabilities": []}]
    assert art["pipelines"] == [{"name": "sketch", "class": f"{__name__}.Sketch", "description": "Draw a sketch"}]
    assert not art["builtin"] and art["version"] is None
    mock = records["mock"]
    assert mock["builtin"] and mock["distribution"] == "loom-daemon" and mock["version"]
    assert mock["providers"][0]["deterministic"] is True
    text = format_inventory(list(records.values()))
    assert "  provider  painter: image  (local)" in text
    assert "  model     painter-small (provider painter)" in text
    assert "  pipeline  sketch: Draw a sketch" in text


def test_inventory_refuses_duplicates_as_start_up_would():
    class OtherMock(Painter):
        name = "mock"

    twin = types.ModuleType("twin")
    twin.register_providers = hookimpl(lambda register: register(OtherMock))
    with pytest.raises(PluginError, match="registered by two plugins"):
        inventory(extra_plugins={"twin": twin})


def test_plugins_json_and_config_sections(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("LOOM_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("LOOM_DISABLE_PLUGINS", raising=False)
    assert main(["plugins", "--json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert {"mock", "llamacpp"} <= names
    config = tmp_path / "loom.toml"
    config.write_text(f'[daemon]\ndata_dir = "{tmp_path}"\n\n[plugins.mock]\nenabled = false\n')
    assert main(["plugins", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "mock" not in out.split() and "llamacpp" in out
    config.write_text("[plugins.nosuch]\n")
    assert main(["plugins", "--config", str(config)]) == 2
    assert "no installed plugin is named 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("acme", ("acme", "loom-acme", "loom_acme", "AcmeProvider")),
        ("loom-acme-llm", ("acme-llm", "loom-acme-llm", "loom_acme_llm", "AcmeLlmProvider")),
        ("fast_tts2", ("fast_tts2", "loom-fast_tts2", "loom_fast_tts2", "FastTts2Provider")),
    ],
)
def test_plugin_names(name, expected):
    names = plugin_names(name)
    assert (names["name"], names["dist"], names["module"], names["cls"]) == expected


@pytest.mark.parametrize("bad", ["Acme", "1acme", "acme!", "ac--me", ""])
def test_bad_plugin_names_are_refused(bad, capsys, tmp_path):
    assert main(["new-plugin", bad, "--dir", str(tmp_path)]) == 2
    assert "must be lowercase letters and digits" in capsys.readouterr().err


def test_new_plugin_skeleton_passes_the_conformance_kit(tmp_path, monkeypatch, capsys):
    assert main(["new-plugin", "kitcheck", "--dir", str(tmp_path)]) == 0
    assert "pip install -e" in capsys.readouterr().out
    root = tmp_path / "loom-kitcheck"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md",
        "loom_kitcheck/__init__.py",
        "loom_kitcheck/provider.py",
        "pyproject.toml",
        "tests/test_loom_kitcheck_conformance.py",
    ]
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.loom]\nkitcheck = "loom_kitcheck"' in pyproject
    assert main(["new-plugin", "kitcheck", "--dir", str(tmp_path)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err

    monkeypatch.syspath_prepend(str(root))
    try:
        module = importlib.import_module("loom_kitcheck")
        subject = Subject(module.KitcheckProvider, {}, settings=Settings(deterministic=True, plugin=module))
        subject.load()
        results = run_checks(subject)
        subject.close()
    finally:
        for name in [m for m in sys.modules if m.startswith("loom_kitcheck")]:
            del sys.modules[name]
    assert {k: v for k, v in results.items() if v is not None} == {}
    assert "chat.stream" in results and "embedding.vectors" in results and "plugin.registration" in results


def test_write_plugin_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "loom-empty").mkdir()
    assert (write_plugin("empty", tmp_path) / "pyproject.toml").exists()
