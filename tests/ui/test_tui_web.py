"""`loom tui --web`: textual-serve puts the Textual app in a browser page, behind a token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import free_port


def test_the_tui_runs_in_a_browser_behind_a_token(page, ui_daemon):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loom.daemon.cli", "tui", "--web", "--port", str(port), "--url", ui_daemon.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the server and the TUI it runs per tab end together
    )
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "token=" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, line
            line = proc.stdout.readline()
        url = re.search(r"(http://\S+\?token=\S+)", line).group(1)
        base = url.split("/?")[0]
        for _ in range(100):  # the banner is printed before the socket listens
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(base).status_code == 403
        assert httpx.get(f"{base}/?token=wrong").status_code == 403

        frames: list[str] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
        page.goto(url)
        # The app's own screen arrives over the page's WebSocket: the TUI runs, talking to the daemon.
        deadline = time.monotonic() + 45
        while not any("Jobs" in f for f in frames):
            assert time.monotonic() < deadline, f"no TUI output in {len(frames)} frames"
            page.wait_for_timeout(200)
        cookie = {c["name"]: c for c in page.context.cookies()}["loom_tui_token"]
        assert cookie["httpOnly"]
        page.close()  # the tab goes, and with it the TUI that textual-serve ran for it
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
