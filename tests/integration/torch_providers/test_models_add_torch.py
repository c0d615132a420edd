"""Tiny transformers and diffusers models added to a running daemon with ``loom models add`` (by
folder, and by hub id after ``loom pull`` from the fake hub, resumed after a killed download),
then served over HTTP to the ``openai`` client."""

from __future__ import annotations

import base64
import filecmp
import io
import signal
import subprocess
import time

import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.cli_support import LOOM, full_env, loom, sandbox
from tests.integration.fake_hub import FakeHub
from tests.integration.torch_providers.conftest import _tiny_models_module

pytest.importorskip("torch")

REPO = "acme/tiny-gpt2"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-added")
    tiny = _tiny_models_module()
    return {"gpt2": tiny.gpt2(root), "sd": tiny.stable_diffusion(root), "reranker": tiny.cross_encoder(root)}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, offline_env, home):
    tmp = tmp_path_factory.mktemp("torch-add")
    config = write_config(tmp / "loom.toml", '[daemon]\nhost = "127.0.0.1"\n')
    # Offline, reading the cache `loom pull` fills (the CLI's sandbox HF_HOME).
    env = {**offline_env(tmp), "HF_HOME": str(home / "hf")}
    d = Daemon(config, tmp / "data", env=env).start()
    yield d
    d.stop()


def test_a_transformers_folder_and_a_diffusers_folder_serve_once_added(daemon, folders, home):
    env = sandbox(home, url=daemon.url)
    r = loom("models", "add", str(folders["gpt2"]), "--id", "added-gpt2", "-o", "max_new_tokens=8", env=env)
    assert r.returncode == 0, r.stderr
    assert "added added-gpt2 (transformers: chat, completion, embedding)" in r.stdout
    r = loom("models", "add", str(folders["sd"]), "--id", "added-sd", "-o", "steps=2", env=env)
    assert r.returncode == 0, r.stderr
    assert "added added-sd (diffusers: image)" in r.stdout

    client = openai_client(daemon, timeout=180)
    reply = client.chat.completions.create(model="added-gpt2", messages=[{"role": "user", "content": "hello"}], seed=1)
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens > 0
    assert len(client.embeddings.create(model="added-gpt2", input=["a cat"]).data[0].embedding) == 32
    image = client.images.generate(model="added-sd", prompt="a lighthouse", size="64x48", extra_body={"seed": 1})
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(image.data[0].b64_json))).size == (64, 48)


def test_a_cross_encoder_folder_is_added_as_a_reranker_and_ranks(daemon, folders, home):
    env = sandbox(home, url=daemon.url)
    r = loom("models", "add", str(folders["reranker"]), "--id", "added-reranker", env=env)
    assert r.returncode == 0, r.stderr
    assert "added added-reranker (transformers-rerank: rerank)" in r.stdout
    client = openai_client(daemon, timeout=180)
    body = {"model": "added-reranker", "query": "the sea", "documents": ["a calm sea", "a red fox", "stocks"]}
    ranked = client.post("/rerank", body=body, cast_to=object)
    assert sorted(r["index"] for r in ranked["results"]) == [0, 1, 2]
    scores = [r["relevance_score"] for r in ranked["results"]]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)


def test_a_killed_pull_resumes_then_the_hub_id_serves(daemon, folders, home):
    hub = FakeHub()
    hub.add_folder(REPO, folders["gpt2"])
    hub.slow[f"{REPO}/model.safetensors"] = 0.3  # ~14 chunks of 16 kB: several seconds
    hub.start()
    try:
        env = sandbox(home, url=daemon.url, HF_ENDPOINT=hub.url)
        first = subprocess.Popen(
            [str(LOOM), "pull", REPO], env=full_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while hub.sent.get(f"{REPO}/model.safetensors", 0) < 32 * 1024:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # as a crash or a power cut would stop it
        first.wait(30)
        small = sorted(p.name for p in folders["gpt2"].iterdir() if p.name != "model.safetensors")
        assert all(len(hub.gets(REPO, name)) == 1 for name in small)

        hub.slow.clear()
        r = loom("pull", REPO, env=env)
        assert r.returncode == 0, r.stderr
        assert f"pulled {REPO}: {len(small) + 1} files" in r.stdout
        assert all(len(hub.gets(REPO, name)) == 1 for name in small)  # complete files were not fetched again
        assert len(hub.gets(REPO, "model.safetensors")) == 2
        snapshot = home / "hf" / "hub" / "models--acme--tiny-gpt2" / "snapshots" / hub.commit(REPO)
        _, mismatch, errors = filecmp.cmpfiles(folders["gpt2"], snapshot, [*small, "model.safetensors"], shallow=False)
        assert not mismatch and not errors
    finally:
        hub.stop()

    r = loom("models", "add", REPO, "--id", "hub-gpt2", "-o", "max_new_tokens=4", env=env)
    assert r.returncode == 0, r.stderr
    assert 'options = {model = "acme/tiny-gpt2", max_new_tokens = 4}' in daemon.config.read_text()
    reply = openai_client(daemon, timeout=180).chat.completions.create(
        model="hub-gpt2", messages=[{"role": "user", "content": "hello"}], seed=1
    )
    assert reply.usage.completion_tokens > 0
