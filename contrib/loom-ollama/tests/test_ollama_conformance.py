"""Loom's conformance kit on the ollama provider, against the fake Ollama."""

from __future__ import annotations

import loom_ollama
import pytest
from loom.sdk.testing import ProviderConformance
from loom_ollama import OllamaProvider


class TestOllamaConformance(ProviderConformance):
    provider = OllamaProvider
    plugin = loom_ollama
    entry_point = "ollama"

    @pytest.fixture(scope="class")
    @classmethod
    def loom_options(cls, fake_ollama):
        return {"model": "tiny", "host": fake_ollama.url, "keep_alive": "5m"}
