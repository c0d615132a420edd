"""Fixtures for the torch providers: tiny models built once per session, and a daemon serving them.

The models are saved under the session's tmp dir and loaded by path; the daemon runs with
``HF_HUB_OFFLINE=1`` and its Hugging Face cache in tmp, so nothing is downloaded or cached
outside the session. torch is imported inside the fixtures: when it is missing, the test modules
skip (``pytest.importorskip``) before any fixture runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon, openai_client, write_config

HERE = Path(__file__).resolve().parent


def _tiny_models_module():
    sys.path.insert(0, str(HERE))
    try:
        import tiny_models
    finally:
        sys.path.remove(str(HERE))
    return tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch")
    return _tiny_models_module().build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def big_gpt2(tmp_path_factory) -> Path:
    """A GPT-2 with ~77 MB of float32 weights: big enough for memory to be measured."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("big-model")
    return _tiny_models_module().gpt2(root, name="gpt2-77mb", n_embd=512, n_layer=6, n_head=8)


def _offline_env(tmp: Path) -> dict[str, str]:
    """No network, and a Hugging Face cache of the session's own."""
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # Two cores: keep torch from oversubscribing them across the daemon's threads.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }


@pytest.fixture(scope="session")
def offline_env():
    """``offline_env(tmp)``: the environment a daemon under test runs with."""
    return _offline_env


TORCH_CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
image = "tiny-sd"

[[models]]
id = "tiny-gpt2"
provider = "transformers"
options = {{ model = "{gpt2}", max_new_tokens = 16 }}

[[models]]
id = "tiny-gpt2-long"
provider = "transformers"
options = {{ model = "{gpt2_long}", max_new_tokens = 16 }}

[[models]]
id = "tiny-gpt2-encoder"
provider = "transformers-embedding"
options = {{ model = "{gpt2}" }}

[[models]]
id = "tiny-nllb"
provider = "transformers-translation"
options = {{ model = "{nllb}", num_beams = 2, max_new_tokens = 12, chunk_tokens = 40 }}

[[models]]
id = "tiny-blip"
provider = "transformers-vision"
options = {{ model = "{blip}" }}

[[models]]
id = "tiny-llava"
provider = "transformers-vision"
options = {{ model = "{llava}" }}

[[models]]
id = "tiny-sd"
provider = "diffusers"
options = {{ model = "{sd}", steps = 2 }}

[[models]]
id = "tiny-clip"
provider = "openclip"
options = {{ model = "{clip}", aesthetic_head = "{aesthetic_head}" }}

[[models]]
id = "tiny-clip-custom"
provider = "openclip"
options = {{ model = "loom-tiny-clip", config = "{clip_config}", pretrained = "{clip_checkpoint}" }}

[[models]]
id = "not-downloaded"
provider = "transformers"
options = {{ model = "loom-tests/no-such-model" }}
"""


@pytest.fixture(scope="session")
def torch_daemon(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torch-daemon")
    config = write_config(tmp / "loom.toml", TORCH_CONFIG.format(**{k: str(v) for k, v in tiny_models.items()}))
    d = Daemon(config, tmp / "data", env=_offline_env(tmp)).start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def torch_client(torch_daemon):
    return openai_client(torch_daemon, timeout=180)
