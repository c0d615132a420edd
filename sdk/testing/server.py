"""``LoomServer``: a real ``loom serve`` on a free loopback port, for a plugin's end-to-end tests.

It starts the daemon as a subprocess of the current interpreter, so the plugins installed in the
test's environment are the ones it loads, exactly as for a user.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoomServer:
    """``with LoomServer(config_toml, tmp_path) as loom: loom.openai().chat.completions...``"""

    def __init__(
        self,
        config: str | os.PathLike,
        workdir: str | os.PathLike,
        *,
        env: dict[str, str] | None = None,
        data_dir: str | os.PathLike | None = None,
        args: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        """``config`` is TOML text (written to ``workdir/loom.toml``) or the path of a config
        file; the data dir defaults to ``workdir/data`` and the log goes to ``workdir``; ``port``
        defaults to a free one; ``args`` are more ``loom serve`` options (``["--ray", address]``;
        the port is ``port=``, not ``--port`` there, so the server is waited for where it listens)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, str):
            self.config_path = self.workdir / "loom.toml"
            self.config_path.write_text(textwrap.dedent(config))
        else:
            self.config_path = Path(config)
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "data"
        for flag in ("--port", "--host"):
            if flag in (args or []) or any(a.startswith(f"{flag}=") for a in args or []):
                raise ValueError(f"LoomServer: give the port as port=, not {flag} in args (it serves on 127.0.0.1)")
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.args = list(args or [])
        self.log_path = self.workdir / f"loom-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> LoomServer:
        cmd = [
            sys.executable,
            "-m",
            "loom.daemon.cli",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loom serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"loom serve did not answer /health in {timeout}s:\n{self.output()}")

    def stop(self, kill: bool = False) -> None:
        """Stop the daemon: SIGTERM (a graceful stop), or SIGKILL with ``kill=True`` (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, kill: bool = False) -> LoomServer:
        """Stop (or kill) and start again on the same port, config and data dir."""
        self.stop(kill=kill)
        return self.start()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def openai(self, api_key: str = "none", **kw: Any) -> Any:
        """An ``openai.OpenAI`` client for this daemon's /v1."""
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, **kw)

    def __enter__(self) -> LoomServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
