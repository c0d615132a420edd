"""``loom models scan`` over fake stores laid out as each tool lays them out, in a sandboxed HOME:
the Hugging Face cache (blobs, snapshots, refs), Ollama's manifests and blobs, LM Studio's
publisher/repository folders. Each find comes with a config entry and an add command that works."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.integration.cli_support import SMOLLM2, loom, sandbox

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path]) -> Path:
    """A repository as huggingface_hub caches it: blobs by hash, a snapshot of links, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(name.encode()).hexdigest()
        if isinstance(content, Path):
            blob.symlink_to(content)
        else:
            blob.write_bytes(content)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    return snapshot


def ollama_model(root: Path, name: str, tag: str, weights: Path | None, registry=("registry.ollama.ai", "library")):
    digest = hashlib.sha256(f"{name}:{tag}".encode()).hexdigest()
    manifest = root / "manifests" / Path(*registry) / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layers = [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 1},
    ]
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    if weights is not None:
        (root / "blobs").mkdir(exist_ok=True)
        (root / "blobs" / f"sha256-{digest}").symlink_to(weights)
    return root / "blobs" / f"sha256-{digest}"


@pytest.fixture
def stores(tmp_path):
    home = tmp_path / "home"
    hf = tmp_path / "hf" / "hub"  # HF_HOME/hub, as the sandbox sets HF_HOME
    hf_repo(
        hf,
        "acme/tiny-chat",
        {
            "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode(),
            "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode(),
            "model.safetensors": b"\0" * 1000,
        },
    )
    gguf_snapshot = hf_repo(hf, "acme/Smol-GGUF", {"smol.Q4_1.gguf": SMOLLM2, "smol.Q8_0.gguf": SMOLLM2})
    ollama = home / ".ollama" / "models"
    blob = ollama_model(ollama, "smollm2", "135m", SMOLLM2)
    ollama_model(ollama, "Smol-GGUF", "Q4_1", SMOLLM2, registry=("hf.co", "acme"))
    missing = ollama_model(ollama, "broken", "latest", None)
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "SmolLM2-GGUF"
    lms.mkdir(parents=True)
    (lms / "SmolLM2-135M-Instruct-Q4_1.gguf").symlink_to(SMOLLM2)
    return {"tmp": tmp_path, "gguf_snapshot": gguf_snapshot, "blob": blob, "missing": missing, "lms": lms}


def test_scan_finds_the_three_stores_with_entries_that_add(stores):
    env = sandbox(stores["tmp"])
    r = loom("models", "scan", "--json", env=env)
    assert r.returncode == 0, r.stderr
    found = {(f["store"], f["name"]): f for f in json.loads(r.stdout)["models"]}
    assert set(found) == {
        ("huggingface", "acme/tiny-chat"),
        ("huggingface", "acme/Smol-GGUF/smol.Q4_1.gguf"),
        ("huggingface", "acme/Smol-GGUF/smol.Q8_0.gguf"),
        ("ollama", "smollm2:135m"),
        ("ollama", "hf.co/acme/Smol-GGUF:Q4_1"),
        ("ollama", "broken:latest"),
        ("lmstudio", "lmstudio-community/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"),
    }
    chat = found["huggingface", "acme/tiny-chat"]
    assert chat["model"] == {
        "id": "tiny-chat",
        "provider": "transformers",
        "capabilities": ["chat", "completion", "embedding"],
        "options": {"model": "acme/tiny-chat"},  # by hub id: the libraries read the cache
    }
    assert chat["add"] == "loom models add acme/tiny-chat --id tiny-chat"
    q8 = found["huggingface", "acme/Smol-GGUF/smol.Q8_0.gguf"]
    assert q8["model"]["options"] == {"path": str(stores["gguf_snapshot"] / "smol.Q8_0.gguf")}
    assert q8["add"] == "loom models add acme/Smol-GGUF --file smol.Q8_0.gguf --id smol.q8_0"
    ollama = found["ollama", "smollm2:135m"]
    assert ollama["model"]["id"] == "smollm2-135m-2" and ollama["model"]["provider"] == "llamacpp"
    assert ollama["model"]["options"] == {"path": str(stores["blob"])}
    assert ollama["model"]["capabilities"] == ["chat", "completion", "embedding"]
    assert ollama["size"] == SMOLLM2.stat().st_size
    assert found["ollama", "hf.co/acme/Smol-GGUF:Q4_1"]["model"]["id"] == "smol-gguf-q4_1"
    broken = found["ollama", "broken:latest"]
    assert broken["model"] is None and f"the weights blob {stores['missing']} is missing" in broken["note"]
    lms = found["lmstudio", "lmstudio-community/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"]
    assert lms["model"]["options"] == {"path": str(stores["lms"] / "SmolLM2-135M-Instruct-Q4_1.gguf")}

    # The text form shows each entry as it goes in the config, and the add commands work as printed.
    text = loom("models", "scan", env=env).stdout
    assert "ollama  smollm2:135m  93.8 MiB  gguf (" in text
    assert '  [[models]]\n  id = "smollm2-135m-2"\n  provider = "llamacpp"' in text
    for key in [
        ("ollama", "smollm2:135m"),
        ("huggingface", "acme/Smol-GGUF/smol.Q8_0.gguf"),
        ("huggingface", "acme/tiny-chat"),
    ]:
        args = found[key]["add"].split()[1:]
        r = loom(*args, env=env)
        assert r.returncode == 0, r.stderr
    listing = {m["id"]: m for m in json.loads(loom("models", "ls", "--json", env=env).stdout)["models"]}
    assert listing["smollm2-135m-2"]["path"] == str(stores["blob"])  # "smollm2-135m" is the default's
    assert listing["smol.q8_0"]["options"] == q8["model"]["options"]
    assert listing["tiny-chat"]["options"] == {"model": "acme/tiny-chat"}
    assert listing["tiny-chat"]["path"] == str(
        stores["tmp"] / "hf" / "hub" / "models--acme--tiny-chat" / "snapshots" / COMMIT
    )


def test_scan_with_nothing_there(tmp_path):
    r = loom("models", "scan", env=sandbox(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "nothing found in the Hugging Face cache, Ollama's store or LM Studio's folder" in r.stdout
