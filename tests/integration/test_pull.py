"""``loom pull`` against a local fake hub (``HF_ENDPOINT``; see fake_hub.py): a GGUF repository's
quantisations, a dropped connection resumed with a Range request, the standard cache, and the
pulled model added to a running daemon and served to the ``openai`` client."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.cli_support import SMOLLM2, loom, sandbox
from tests.integration.fake_hub import FakeHub

REPO = "acme/SmolLM2-135M-Instruct-GGUF"
Q4 = "SmolLM2-135M-Instruct.Q4_1.gguf"
Q8 = "SmolLM2-135M-Instruct.Q8_0.gguf"


@pytest.fixture(scope="module")
def hub():
    fake = FakeHub()
    # Both "quantisations" are the real SmolLM2 file, so whichever is pulled can serve.
    fake.add_repo(REPO, {Q4: SMOLLM2, Q8: SMOLLM2, "README.md": b"# SmolLM2 GGUF\n"})
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("pull-home")


def hub_env(hub, home, **extra):
    return sandbox(home, HF_ENDPOINT=hub.url, **extra)


def test_a_gguf_repository_offers_its_quantisations(hub, home):
    r = loom("pull", REPO, env=hub_env(hub, home))
    assert r.returncode == 2
    assert f"{REPO} has 2 quantisations; choose one with --file" in r.stderr
    assert f"Q4_1  {Q4}  (93.8 MiB)" in r.stderr and f"Q8_0  {Q8}  (93.8 MiB)" in r.stderr
    assert hub.gets(REPO, Q4) == [] and hub.gets(REPO, Q8) == []  # nothing downloaded


def test_an_unknown_repository(hub, home):
    r = loom("pull", "acme/no-such-model", env=hub_env(hub, home))
    assert r.returncode == 2
    assert "no model repository acme/no-such-model on the hub" in r.stderr


def test_pull_resumes_a_dropped_download_into_the_standard_cache(hub, home):
    cut = 50_000_000
    hub.cut[f"{REPO}/{Q4}"] = cut
    r = loom("pull", REPO, "--file", "q4_1", env=hub_env(hub, home))
    assert r.returncode == 0, r.stderr
    snapshot = home / "hf" / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots" / hub.commit(REPO)
    assert f"pulled {REPO}: Q4_1 ({Q4}) in {snapshot}" in r.stdout
    assert f"serve it: loom models add {REPO} --file {Q4}" in r.stdout
    assert "Trying to resume download" in r.stderr and "100%" in r.stderr  # huggingface_hub's progress bar
    # The first GET was cut; the second asked only for the rest (from the last whole chunk written).
    first, second = hub.gets(REPO, Q4)
    assert first is None and second.startswith("bytes=")
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut
    assert hub.sent[f"{REPO}/{Q4}"] == cut + SMOLLM2.stat().st_size - resumed_at
    digest = hashlib.sha256((snapshot / Q4).read_bytes()).hexdigest()
    assert digest == hashlib.sha256(SMOLLM2.read_bytes()).hexdigest()
    assert hub.gets(REPO, Q8) == []  # the other quantisation stays on the hub

    # Pulled again: everything is there, nothing is fetched.
    requests = len(hub.gets(REPO, Q4))
    assert loom("pull", REPO, "--file", Q4, env=hub_env(hub, home)).returncode == 0
    assert len(hub.gets(REPO, Q4)) == requests

    # Scan sees it in the cache, with the entry and the command that add it.
    found = json.loads(loom("models", "scan", "--json", env=hub_env(hub, home)).stdout)["models"]
    (entry,) = [f for f in found if f["name"] == f"{REPO}/{Q4}"]
    assert entry["model"]["options"] == {"path": str(snapshot / Q4)}
    assert entry["add"] == f"loom models add {REPO} --file {Q4} --id smollm2-135m-instruct.q4_1"


def test_a_pulled_model_added_to_a_running_daemon_serves(hub, home, tmp_path):
    config = write_config(tmp_path / "loom.toml", '[daemon]\nhost = "127.0.0.1"\n')
    daemon = Daemon(config, tmp_path / "data", env={"HF_HOME": str(home / "hf")}).start()
    try:
        env = hub_env(hub, home, LOOM_URL=daemon.url)
        r = loom("pull", REPO, "--file", "Q4_1", "--add", "--id", "hub-smol", env=env)
        assert r.returncode == 0, r.stderr
        assert "added hub-smol (llamacpp: chat, completion, embedding)" in r.stdout
        reply = openai_client(daemon, timeout=120).chat.completions.create(
            model="hub-smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, seed=1
        )
        assert reply.choices[0].message.content.strip()
        snapshot = home / "hf" / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots" / hub.commit(REPO)
        assert f'path = "{snapshot / Q4}"' in config.read_text()
        # A hub id whose GGUFs are cached adds by name too; --file picks the quantisation.
        r = loom("models", "add", REPO, "--file", "Q4_1", "--id", "by-hub-id", env=env)
        assert r.returncode == 0, r.stderr
        # --pull downloads what is not cached yet, then adds it.
        r = loom("models", "add", REPO, "--pull", "--file", "Q8_0", "--id", "via-pull", env=env)
        assert r.returncode == 0, r.stderr
        assert f"pulled {REPO}: Q8_0 ({Q8})" in r.stdout and "added via-pull" in r.stdout
        assert (snapshot / Q8).is_file()  # the same bytes as Q4_1: the cache keeps one blob for both
        r = loom("models", "add", "acme/never-pulled", env=env)
        assert r.returncode == 2 and "download it first with `loom pull acme/never-pulled`" in r.stderr
    finally:
        daemon.stop()
