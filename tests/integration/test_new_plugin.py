"""`loom new-plugin` end to end: generate, pip install, run its tests, serve it, call it via /v1.

The plugin is installed (editable) into the test's own environment, which is what a plugin author
does, and uninstalled in a ``finally``. Its name is unique per run so concurrent runs sharing the
environment do not collide.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid

import pytest

from tests.conftest import Daemon, openai_client, write_config

pytestmark = pytest.mark.slow


def loom(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loom.daemon.cli", *args], capture_output=True, text=True, **kw)


def pip(*args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_generated_plugin_installs_passes_its_tests_and_serves(tmp_path):
    name = f"gen{uuid.uuid4().hex[:8]}"
    made = loom("new-plugin", name, "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / f"loom-{name}"
    daemon = None
    try:
        pip("install", "--no-deps", "--no-build-isolation", "-e", str(root))

        # Its own test file: the conformance kit, entry point check included.
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            capture_output=True,
            text=True,
            cwd=root,
        )
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert " passed" in tests.stdout and "failed" not in tests.stdout

        listed = loom("plugins", "--json", check=True)
        plugin = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}[name]
        assert plugin["distribution"] == f"loom-{name}" and plugin["version"] == "0.1.0"
        assert plugin["providers"][0]["capabilities"] == ["chat", "embedding"]

        config = write_config(
            tmp_path / "loom.toml",
            f"""
            [[models]]
            id = "{name}-demo"
            provider = "{name}"
            options = {{ greeting = "Hello from the new plugin!" }}
        """,
        )
        daemon = Daemon(config, tmp_path / "data").start()
        client = openai_client(daemon)
        assert f"{name}-demo" in {m.id for m in client.models.list().data}
        reply = client.chat.completions.create(
            model=f"{name}-demo", messages=[{"role": "user", "content": "one two three"}]
        )
        assert reply.choices[0].message.content == "Hello from the new plugin! three two one"
        assert reply.usage.prompt_tokens == 3 and reply.usage.completion_tokens == 8
        stream = client.chat.completions.create(
            model=f"{name}-demo", messages=[{"role": "user", "content": "one two three"}], max_tokens=2, stream=True
        )
        chunks = [c for c in stream if c.choices]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from"
        assert chunks[-1].choices[0].finish_reason == "length"
        vectors = client.embeddings.create(model=f"{name}-demo", input=["a b", "c"]).data
        assert len(vectors) == 2 and abs(math.sqrt(sum(x * x for x in vectors[0].embedding)) - 1) < 1e-6
    finally:
        if daemon is not None:
            daemon.stop()
        pip("uninstall", "-y", f"loom-{name}")
    gone = loom("plugins", "--json", check=True)
    assert name not in {p["name"] for p in json.loads(gone.stdout)["plugins"]}
