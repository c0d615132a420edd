"""The openai plugin without a network: options, error mapping, key hygiene, prompt parsing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import msgspec
import pytest
from loom.plugins.openai import ModelOptions, OpenAIProvider, PluginOptions
from loom.plugins.openai.errors import Upstream, from_exception, from_status, retry_after, safe_url, scrub
from loom.plugins.openai.prompts import parse_scores
from loom.sdk import (
    AuthenticationFailed,
    ConfigError,
    InvalidRequest,
    ModelSpec,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)

UP = Upstream(model="grok", instance="xai", url="https://api.x.ai/v1", key_env="XAI_API_KEY", timeout=5)
KEY = "xai-SuperSecretValue123456"


def provider(plugin: dict, options: dict | None = None, model: str = "grok") -> OpenAIProvider:
    spec = ModelSpec(
        id=model,
        provider="openai",
        options=msgspec.convert(options or {}, ModelOptions),
        plugin_options=msgspec.convert(plugin, PluginOptions),
    )
    return OpenAIProvider(spec)


def test_importing_the_plugin_does_not_import_openai():
    code = "import sys, loom.plugins.openai; print('openai' in sys.modules, 'httpx2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_instance_choice_and_model_map():
    one = {"instances": {"xai": {"base_url": "https://api.x.ai/v1", "model_map": {"grok": "grok-3"}}}}
    p = provider(one)
    assert (p.instance_name, p.remote_model) == ("xai", "grok-3")
    assert provider(one, {"model": "grok-4"}).remote_model == "grok-4"
    assert provider(one, model="other").remote_model == "other"
    two = {"instances": {"a": {"base_url": "http://a/v1"}, "b": {"base_url": "http://b/v1"}}}
    with pytest.raises(ConfigError, match="options.instance is required"):
        provider(two)
    with pytest.raises(ConfigError, match="no instance named 'c'.*configured: a, b"):
        provider(two, {"instance": "c"})


def test_a_missing_key_fails_the_call_naming_the_variable(monkeypatch):
    monkeypatch.delenv("LOOM_T_MISSING", raising=False)
    p = provider({"instances": {"xai": {"base_url": "https://api.x.ai/v1", "api_key": {"env": "LOOM_T_MISSING"}}}})
    with pytest.raises(AuthenticationFailed, match="LOOM_T_MISSING") as e:
        p.client()
    assert e.value.code == "provider_key_missing"
    info = p.health_info()
    assert info["api_key"] == {"env": "LOOM_T_MISSING", "set": False}


async def test_health_info_never_holds_the_key(monkeypatch):
    monkeypatch.setenv("LOOM_T_KEY", KEY)
    p = provider(
        {"instances": {"xai": {"base_url": "https://user:pw@api.x.ai/v1?token=t", "api_key": {"env": "LOOM_T_KEY"}}}}
    )
    p.client()  # resolves the key
    shown = repr(p.health_info()) + repr(p.upstream)
    assert KEY not in shown and "pw" not in shown and "token" not in shown
    assert p.health_info()["api_key"] == {"env": "LOOM_T_KEY", "set": True}
    await p.aclose()


def test_scrub_removes_keys_masked_keys_and_bearer_tokens():
    text = f"Incorrect API key provided: xai-Sup***3456. sent {KEY} as Authorization: Bearer abc.def sk-proj-abcdefgh12"
    clean = scrub(text, (KEY,))
    for leaked in (KEY, "xai-Sup", "abc.def", "sk-proj-abcdefgh12"):
        assert leaked not in clean
    assert scrub("x" * 1000).endswith("...") and len(scrub("x" * 1000)) == 400


def test_retry_after_forms():
    assert retry_after({"retry-after": "7"}) == 7
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after({"retry-after": date}) <= 30
    assert retry_after({}) == 1.0 and retry_after({"retry-after": "soon"}) == 1.0


def test_status_mapping_keeps_meaning_and_hides_what_the_service_says_about_keys():
    body = {"message": "max_tokens is too large", "type": "invalid_request_error", "param": "max_tokens", "code": "bad"}
    e = from_status(400, body, {}, UP, (KEY,))
    assert isinstance(e, InvalidRequest) and (e.message, e.param, e.code) == (
        "max_tokens is too large",
        "max_tokens",
        "bad",
    )

    e = from_status(401, {"message": f"Incorrect API key provided: {KEY}"}, {}, UP, (KEY,))
    assert isinstance(e, AuthenticationFailed) and "XAI_API_KEY" in e.message and KEY not in e.message
    assert isinstance(from_status(403, None, {}, UP, ()), AuthenticationFailed)

    e = from_status(429, {"error": {"message": "slow down"}}, {"retry-after": "12"}, UP, ())
    assert isinstance(e, RateLimited) and e.retry_after == 12 and "slow down" in e.message

    for status in (404, 500, 502, 503):
        e = from_status(status, {"message": f"oops {KEY}"}, {}, UP, (KEY,))
        assert type(e) is ProviderError and str(status) in e.message and KEY not in e.message


def test_connection_errors_under_the_aiohttp_transport_keep_their_meaning():
    """The package's aiohttp transport reports a refused connection as a connect timeout; the
    socket's own error at the root of the chain decides: refused is a 502, a timeout a 504."""
    import aiohttp
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")

    def raised(root: BaseException, mapped: type[Exception]) -> Exception:
        try:
            try:
                try:
                    raise root
                except BaseException as e:
                    raise mapped(str(e)) from e
            except Exception as e:
                raise openai.APITimeoutError(request=request) from e
        except Exception as e:
            return e

    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None),
        ConnectionRefusedError(111, "Connection refused"),
    )
    lost = from_exception(raised(refused, httpx2.ConnectTimeout), UP, ())
    assert type(lost) is ProviderError and "Lost the connection" in lost.message  # a 502, not a 504
    slow = aiohttp.SocketTimeoutError("Timeout on reading data from socket")
    assert isinstance(from_exception(raised(slow, httpx2.ReadTimeout), UP, ()), ProviderTimeout)
    # httpx's own transport: the names of its errors still decide where the root is not a socket's.
    assert isinstance(from_exception(openai.APITimeoutError(request=request), UP, ()), ProviderTimeout)


def test_safe_url_drops_credentials():
    assert safe_url("https://u:p@host:8443/v1?key=abc#x") == "https://host:8443/v1"


def test_parse_scores_tolerates_chatty_answers_and_clamps():
    s = parse_scores('Sure! ```json\n{"clip": 1.7, "aesthetic": 6.5}\n```', "m")
    assert (s.clip, s.aesthetic) == (1.0, 6.5)
    with pytest.raises(ProviderError, match="did not answer with a JSON rating"):
        parse_scores("I like it", "m")


async def test_models_on_one_instance_share_one_client():
    plugin = msgspec.convert(
        {"instances": {"a": {"base_url": "http://a/v1", "retries": 3}, "b": {"base_url": "http://b/v1"}}},
        PluginOptions,
    )

    def on(instance: str, model: str) -> OpenAIProvider:
        options = ModelOptions(instance=instance)
        return OpenAIProvider(ModelSpec(id=model, provider="openai", options=options, plugin_options=plugin))

    first, second, other = on("a", "m1"), on("a", "m2"), on("b", "m3")
    assert first.client() is second.client()
    assert other.client() is not first.client()
    # The package's own retries, as many as the instance says.
    assert first.client().max_retries == 3
    await first.aclose()
    await other.aclose()
