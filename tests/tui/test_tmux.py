"""`loom tui` in a real terminal: tmux runs it at 80x24, the test sends keys and reads the pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")


def tmux(*args: str) -> str:
    return subprocess.run([TMUX, *args], capture_output=True, text=True, check=True).stdout


def pane(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, *texts: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = pane(session)
        if all(t in screen for t in texts):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{texts} not on screen after {timeout}s:\n{screen}")
        time.sleep(0.1)


def test_loom_tui_in_tmux(tui_daemon):
    httpx.post(f"{tui_daemon.url}/admin/models/tui-a/unload", timeout=30)  # so loading it shows
    session = f"loom-tui-{os.getpid()}"
    env = {"LOOM_API_KEY": "", "TERM": "xterm-256color"}
    # (Textual draws on stderr, so neither stream is redirected.)
    command = " ".join(
        [
            *(f"{k}={v}" for k, v in env.items()),
            "exec",
            sys.executable,
            "-m",
            "loom.daemon.cli",
            "tui",
            "--url",
            tui_daemon.url,
        ]
    )
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    try:
        screen = wait_for(session, f"● {tui_daemon.url}", "Devices", "cpu ")
        assert "1234 Screens" in screen and "q Quit" in screen  # key bindings in the footer
        assert len(screen.splitlines()[0]) <= 80

        httpx.post(f"{tui_daemon.url}/admin/models/tui-a/load", timeout=30).raise_for_status()
        wait_for(session, "■ tui-a 200 MiB")  # the VRAM bar's legend

        tmux("send-keys", "-t", session, "3")
        wait_for(session, "Served by", "bs-slow-image", "l Load")
        tmux("send-keys", "-t", session, "4")
        wait_for(session, "tui-a loaded on cpu")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while subprocess.run([TMUX, "has-session", "-t", session], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, f"q did not quit:\n{pane(session)}"
            time.sleep(0.1)
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)
