"""Where every ``loom`` command finds the daemon, by one rule, and how it says so.

``--url``, then ``LOOM_URL``, then the ``[daemon]`` host and port of the config (``--config``,
``LOOM_CONFIG``, the user config, else the default that ships with Loom), then
``http://127.0.0.1:11435``. Looking never writes a user config: only ``loom serve`` (and the
commands that edit one, ``loom models add/rm``) do.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 11435
#: A daemon listening on every address is reached on loopback.
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class DaemonAddress:
    url: str
    #: How it was chosen, for messages: "--url", "LOOM_URL", "the config <path>", "the default".
    source: str

    def unreachable(self, detail: str = "") -> str:
        """The message for a daemon that did not answer: which address, why it was chosen, how to
        change it."""
        why = f" ({detail})" if detail else ""
        return (
            f"no daemon answered at {self.url}{why}; that address comes from {self.source}. "
            "Start one with `loom serve`, or point at another with --url or LOOM_URL."
        )


def config_text(config: str | os.PathLike | None) -> tuple[str | None, Path | None]:
    """The text of the config a command reads (without writing one) and its path, or (None, None)
    when no config exists yet (then ``loom serve`` would write the shipped default)."""
    from .config_file import config_path, packaged_default_text

    path = config_path(config)
    try:
        return path.read_text(encoding="utf-8"), path
    except OSError:
        if config or os.environ.get("LOOM_CONFIG"):
            return None, None
        return packaged_default_text(), None


def url_for(host: str, port: int) -> str:
    host = LOOPBACK_FOR.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def daemon_address(url: str | None = None, config: str | os.PathLike | None = None) -> DaemonAddress:
    """The daemon a command talks to, by the rule in the module's docstring."""
    if url:
        return DaemonAddress(url.rstrip("/"), "--url")
    if os.environ.get("LOOM_URL"):
        return DaemonAddress(os.environ["LOOM_URL"].rstrip("/"), "LOOM_URL")
    text, path = config_text(config)
    if text is not None:
        try:
            daemon = tomllib.loads(text).get("daemon", {})
        except tomllib.TOMLDecodeError:
            daemon = {}
        host, port = daemon.get("host", DEFAULT_HOST), daemon.get("port", DEFAULT_PORT)
        if isinstance(host, str) and isinstance(port, int):
            where = f"the config {path}" if path else "Loom's default config"
            return DaemonAddress(url_for(host, port), f"[daemon] host and port in {where}")
    return DaemonAddress(url_for(DEFAULT_HOST, DEFAULT_PORT), "the default")


def key_hint(status: int | None, *, admin: bool = False) -> str:
    """What to do about a refused key, saying whether LOOM_API_KEY was given at all."""
    if status not in (401, 403):
        return ""
    wanted = "an admin key" if admin else "a key"
    if os.environ.get("LOOM_API_KEY"):
        if status == 403 or admin:
            return f'the daemon refused LOOM_API_KEY: this needs {wanted} (a [[daemon.api_keys]] entry with role = "admin")'
        return "the daemon refused the key in LOOM_API_KEY: it is not one of its keys"
    return f"the daemon wants {wanted}: set LOOM_API_KEY"
