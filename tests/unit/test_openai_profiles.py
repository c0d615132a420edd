"""The openai plugin's parameter profiles: families by model id, per-model overrides, how a body is
adapted for Loom's own calls and a client's, and what a refusal teaches."""

from __future__ import annotations

import pytest
from loom.plugins.openai.profiles import ModelParameters, ParameterOptions, family_of, resolve
from loom.sdk.errors import InvalidRequest, ProviderError


@pytest.mark.parametrize(
    "model, family",
    [
        ("gpt-5", "gpt-5"),
        ("gpt-5-mini", "gpt-5"),
        ("gpt-5-nano-2025-08-07", "gpt-5"),
        ("gpt-5.1", "gpt-5"),
        ("openai/gpt-5-mini", "gpt-5"),
        ("gpt-5-chat-latest", "standard"),
        ("o1", "o-series"),
        ("o3-mini", "o-series"),
        ("o4-mini", "o-series"),
        ("gpt-4o-mini", "standard"),
        ("grok-4", "standard"),
        ("omni-moderation", "standard"),
    ],
)
def test_families_by_model_id(model, family):
    assert family_of(model) == family


def test_overrides_replace_or_trim_the_family():
    _, p = resolve("auto", "gpt-5-mini", ParameterOptions(accepts=["top_p"], reasoning_effort="minimal"))
    assert "top_p" not in p.refuses and "temperature" in p.refuses and p.reasoning_effort == "minimal"
    assert p.token_limit == "max_completion_tokens" and p.reasoning_tokens == 2048
    family, p = resolve("gpt-5", "my-proxy-model", ParameterOptions(refuses=["seed"], reasoning_tokens=0))
    assert family == "gpt-5" and p.refuses == {"seed"} and p.reasoning_tokens == 0
    assert resolve("standard", "gpt-5-mini", None)[1].refuses == frozenset()


def gpt5() -> ModelParameters:
    return ModelParameters("m", *resolve("auto", "gpt-5-mini", None))


def test_loom_own_calls_send_only_what_the_model_takes():
    body = {"model": "gpt-5-mini", "messages": [], "max_tokens": 160, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    sent = gpt5().adapt(body, own=True)
    assert sent == {
        "model": "gpt-5-mini",
        "messages": [],
        "seed": 3,
        "max_completion_tokens": 160 + 2048,
        "reasoning_effort": "low",
    }
    assert gpt5().adapt({**body, "reasoning_effort": "high"}, own=True)["reasoning_effort"] == "high"


def test_a_clients_call_is_only_renamed():
    body = {"model": "gpt-5-mini", "messages": [], "max_tokens": 50, "temperature": 0.7}
    assert gpt5().adapt(body, own=False) == {
        "model": "gpt-5-mini",
        "messages": [],
        "max_completion_tokens": 50,
        "temperature": 0.7,
    }
    standard = ModelParameters("m", *resolve("auto", "gpt-4o", None))
    both = {"max_tokens": 5, "max_completion_tokens": 6}
    assert standard.adapt(both, own=False) == both and standard.adapt(both, own=True) == both


def refusal(param: str, code: str = "unsupported_parameter") -> InvalidRequest:
    return InvalidRequest(f"Unsupported parameter: '{param}'", param=param, code=code)


def test_an_unforeseen_refusal_is_learnt_unless_the_client_asked():
    m = ModelParameters("m", *resolve("auto", "some-model", None))
    sent = {"model": "some-model", "messages": [], "seed": 1, "stream_options": {"include_usage": True}}
    assert m.learn(refusal("seed"), sent, frozenset({"seed"})) is None and m.learnt == set()
    retry = m.learn(refusal("seed"), sent, frozenset())
    assert retry == {"model": "some-model", "messages": [], "stream_options": {"include_usage": True}}
    assert m.learnt == {"seed"} and "seed" not in m.adapt(sent, own=True)
    assert m.adapt(sent, own=False)["seed"] == 1  # a client's explicit one still goes (and gets the 400)
    # Not a refusal of a parameter, or of one the body does not hold, or of the call itself: it stands.
    assert m.learn(InvalidRequest("bad", param="seed"), sent, frozenset()) is None
    assert m.learn(refusal("logprobs"), sent, frozenset()) is None
    assert m.learn(refusal("messages"), sent, frozenset()) is None
    assert m.learn(ProviderError("down"), sent, frozenset()) is None


def test_a_refused_limit_is_renamed_even_for_a_client():
    m = ModelParameters("m", *resolve("auto", "some-reasoner", None))
    sent = {"model": "x", "messages": [], "max_tokens": 10}
    assert m.learn(refusal("max_tokens"), sent, frozenset({"max_tokens"})) == {
        "model": "x",
        "messages": [],
        "max_completion_tokens": 10,
    }
    assert m.token_limit == "max_completion_tokens" and m.adapt(sent, own=False)["max_completion_tokens"] == 10
    assert m.describe()["token_limit"] == "max_completion_tokens"
