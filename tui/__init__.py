"""loom.tui: the Textual terminal UI, a client of the daemon over HTTP (through loom.sdk)."""

from __future__ import annotations

import os
import sys
import threading


def run(url: str | None = None, api_key: str | None = None) -> int:
    """``loom tui``: start the TUI against the daemon at ``url`` (default $LOOM_URL); the API key
    defaults to $LOOM_API_KEY."""
    probe = None
    if sys.stdout.isatty():
        from . import graphics

        probe = threading.Thread(target=graphics.probe, name="terminal-graphics", daemon=True)
        probe.start()
    from .app import LoomApp  # imports while the terminal answers

    if probe is not None:
        probe.join(timeout=3)
    key = api_key if api_key is not None else os.environ.get("LOOM_API_KEY")
    LoomApp(url=url, api_key=key).run()
    return 0
