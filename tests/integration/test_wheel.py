"""WHEEL TEST (about 30 s): Loom built as a wheel works on its own, outside the source tree.

1. ``pip wheel`` builds it from a copy of the sources, with no deprecation warning from the build.
2. The wheel holds the default config (``loom/daemon/plugins.toml``, the root ``plugins.toml``),
   the templates and SPDX license metadata.
3. It is installed with ``--no-deps`` into a fresh venv. The dependencies come from the shared
   environment through a ``.pth`` file that points at a folder of links to its packages, Loom's
   own (the editable install, the contrib plugins) left out, so only the wheel's Loom is importable.
   This stands in for ``pip install loom-daemon`` without a network: what is tested is Loom's
   wheel, not pip's dependency resolution.
4. ``loom serve`` run from another directory, with no config given, writes the user config from
   the packaged default and answers chat with the embedded SmolLM2 (``openai`` client).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.wheel
SOURCES = ["daemon", "plugins", "sdk", "tui", "plugins.toml", "pyproject.toml", "README.md"]


def build_wheel(tmp: Path) -> tuple[Path, str]:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp / "dist").glob("loom_daemon-*.whl")
    return wheel, out.stdout + out.stderr


def venv_with_shared_deps(tmp: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    shared = Path(sysconfig.get_paths()["purelib"])
    deps = tmp / "deps"
    deps.mkdir()
    for entry in shared.iterdir():
        name = entry.name.lower()
        if name.startswith(("loom", "__editable__")) or name.endswith(".pth"):
            continue
        (deps / entry.name).symlink_to(entry)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "shared_deps.pth").write_text(f"{deps}\n")
    return venv


def clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"), HF_HUB_OFFLINE="1")
    return env


def test_the_wheel_installs_and_serves_chat_on_its_own(tmp_path):
    wheel, log = build_wheel(tmp_path)
    noisy = [line for line in log.splitlines() if "deprecat" in line.lower() or "BuildBackendWarning" in line]
    assert not noisy, "\n".join(noisy)

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("loom/daemon/plugins.toml") == (ROOT / "plugins.toml").read_bytes()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "loom/daemon/templates/new_plugin/provider.py.tmpl" in names
    assert "loom/daemon/catalog/detect.py" in names and "loom/tui/loom.tcss" in names
    assert "License-Expression: Apache-2.0" in metadata
    assert "loom = loom.daemon.cli:main" in entry_points

    venv = venv_with_shared_deps(tmp_path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=180,
    )
    env = clean_env(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import loom.daemon; print(loom.daemon.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's Loom, not the source tree's

    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(venv / "bin" / "loom"), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            env=env,
            cwd=elsewhere,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        user_config = tmp_path / "config" / "loom" / "plugins.toml"
        assert user_config.read_text().endswith((ROOT / "plugins.toml").read_text())
        assert f"wrote the user config {user_config}" in log_path.read_text()

        import openai

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        reply = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "Hello!"}], max_tokens=12, seed=1
        )
        assert reply.choices[0].message.content.strip()
    finally:
        proc.terminate()
        proc.wait(30)
