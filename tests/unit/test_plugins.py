"""Plugin registration: entry points, filters, duplicates named with both plugins."""

from __future__ import annotations

import types

import msgspec
import pytest
from loom.daemon.config import decode_config
from loom.daemon.services import build_services
from loom.sdk import Capability, Provider, hookimpl
from loom.sdk.errors import ConfigError, PluginError


def plugin_with(*providers, models=(), options=None):
    module = types.ModuleType("fake_plugin")

    @hookimpl
    def register_providers(register):
        for p in providers:
            register(p)

    @hookimpl
    def register_models(register):
        for m in models:
            register(m)

    module.register_providers = register_providers
    module.register_models = register_models
    if options is not None:
        module.PluginOptions = options
    return module


class EchoProvider(Provider):
    name = "echo"
    capabilities = frozenset({Capability.CHAT})

    class Options(msgspec.Struct, forbid_unknown_fields=True):
        greeting: str = "hi"

    def chat(self, request, ctx):
        yield from ()


def config(**raw):
    raw.setdefault("daemon", {"data_dir": "/tmp/loom-test-plugins"})
    return decode_config(raw)


def test_builtin_plugins_register_through_entry_points():
    loom = build_services(config())
    assert {"mock", "llamacpp", "openai"} <= set(loom.plugins)
    assert "mock" in loom.plugins["mock"].providers
    assert loom.plugins["mock"].version  # from the distribution's metadata


def test_duplicate_provider_names_both_plugins():
    class OtherMock(EchoProvider):
        name = "mock"

    with pytest.raises(PluginError, match="provider 'mock' is registered by two plugins: 'mock' and 'thirdparty'"):
        build_services(config(), extra_plugins={"thirdparty": plugin_with(OtherMock)})


def test_duplicate_model_names_both_sources():
    from loom.sdk.config import ModelConfig

    raw = {"models": [{"id": "dup", "provider": "echo"}]}
    extra = {"thirdparty": plugin_with(EchoProvider, models=[ModelConfig(id="x", provider="echo", aliases=["dup"])])}
    with pytest.raises(PluginError, match="'dup' is declared twice: by 'config'.*by 'thirdparty'"):
        build_services(config(**raw), extra_plugins=extra)


def test_provider_options_validated_by_provider_type():
    raw = {"models": [{"id": "e", "provider": "echo", "options": {"greting": "x"}}]}
    with pytest.raises(ConfigError, match=r"\$\.models\[0\]\.options.*greting"):
        build_services(config(**raw), extra_plugins={"thirdparty": plugin_with(EchoProvider)})


def test_plugin_options_validated_by_plugin_type():
    class Opts(msgspec.Struct, forbid_unknown_fields=True):
        level: int = 1

    extra = {"thirdparty": plugin_with(EchoProvider, options=Opts)}
    loom = build_services(config(plugins={"thirdparty": {"level": 3}}), extra_plugins=extra)
    assert loom.plugins["thirdparty"].options.level == 3
    with pytest.raises(ConfigError, match=r"\$\.plugins\.thirdparty\.level"):
        build_services(config(plugins={"thirdparty": {"level": "high"}}), extra_plugins=extra)


def test_unknown_plugin_section():
    with pytest.raises(ConfigError, match=r"\$\.plugins\.nosuch"):
        build_services(config(plugins={"nosuch": {}}))


def test_unknown_provider_in_model():
    with pytest.raises(ConfigError, match=r"\$\.models\[0\]\.provider: no provider named 'nope'"):
        build_services(config(models=[{"id": "m", "provider": "nope"}]))


def test_capability_narrowing_refuses_what_provider_lacks():
    raw = {"models": [{"id": "e", "provider": "echo", "capabilities": ["image"]}]}
    with pytest.raises(ConfigError, match="cannot do image"):
        build_services(config(**raw), extra_plugins={"thirdparty": plugin_with(EchoProvider)})


def test_declared_capability_needs_its_method():
    class Liar(Provider):
        name = "liar"
        capabilities = frozenset({Capability.IMAGE})

    with pytest.raises(PluginError, match="declares image but has no generate_images"):
        build_services(config(), extra_plugins={"thirdparty": plugin_with(Liar)})


def test_disable_and_load_filters(monkeypatch):
    monkeypatch.setenv("LOOM_DISABLE_PLUGINS", "openai")
    assert "openai" not in build_services(config()).plugins
    monkeypatch.delenv("LOOM_DISABLE_PLUGINS")
    monkeypatch.setenv("LOOM_LOAD_PLUGINS", "mock")
    assert set(build_services(config()).plugins) == {"mock"}


def test_enabled_false_in_config_skips_plugin():
    loom = build_services(config(plugins={"openai": {"enabled": False}}))
    assert "openai" not in loom.plugins


def test_unknown_fallback_and_route_are_named():
    with pytest.raises(ConfigError, match=r"\$\.models\[0\]\.fallbacks: no model named 'nope'"):
        build_services(config(models=[{"id": "m", "provider": "mock", "fallbacks": ["nope"]}]))
    with pytest.raises(ConfigError, match=r"\$\.routes\.image: no model named 'nope'"):
        build_services(config(routes={"image": "nope"}))


def test_a_misspelt_hook_stops_start_up_with_its_name():
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def register_provider(register):  # register_providers, misspelt
        register(EchoProvider)

    module.register_provider = register_provider
    with pytest.raises(PluginError, match="plugin 'typo' implements 'register_provider', which is not a Loom hook"):
        build_services(config(), extra_plugins={"typo": module})


def test_trace_plugins_prints_every_hook_call(monkeypatch, capsys):
    monkeypatch.setenv("LOOM_LOAD_PLUGINS", "mock,thirdparty")
    monkeypatch.setenv("LOOM_TRACE_PLUGINS", "1")
    build_services(config(), extra_plugins={"thirdparty": plugin_with(EchoProvider)})
    err = capsys.readouterr().err
    # One call per implementing plugin (mock and thirdparty), each traced with its arguments.
    assert err.count("register_providers [hook]") == 2, err
    assert "register_models [hook]" in err and "register: <register for plugin" in err, err
