"""``loom service``: run ``loom serve`` as a user service, started at login and restarted on failure.

``install`` writes a systemd user unit (``~/.config/systemd/user/loom.service``) on Linux or a
launchd agent (``~/Library/LaunchAgents/org.loom.serve.plist``) on macOS, and prints the commands
that enable it; ``print`` shows it without writing; ``uninstall`` removes it. The service runs
this Python (``python -m loom.daemon.cli serve``), so it works from a venv or pipx as installed.
Secrets stay out of the unit: systemd reads ``NAME=value`` lines from ``~/.config/loom/env``.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import sys
from pathlib import Path

SYSTEMD_NAME = "loom.service"
LAUNCHD_LABEL = "org.loom.serve"


def serve_command(config: str | None) -> list[str]:
    command = [sys.executable, "-m", "loom.daemon.cli", "serve"]
    config = config or os.environ.get("LOOM_CONFIG")
    if config:
        command += ["--config", str(Path(config).expanduser().resolve())]
    return command


def _systemd_quote(arg: str) -> str:
    if arg and not any(c in arg for c in " \t\"'\\;$%"):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def env_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("loom", appauthor=False)) / "env"


def systemd_unit(command: list[str]) -> str:
    return f"""\
# Written by `loom service install`. Enable: systemctl --user daemon-reload && systemctl --user enable --now loom
[Unit]
Description=Loom: one local daemon for generative AI (OpenAI-compatible API)
After=network-online.target

[Service]
Type=exec
ExecStart={" ".join(_systemd_quote(a) for a in command)}
Restart=on-failure
RestartSec=5
Environment=PYTHONUNBUFFERED=1
# Secrets such as LOOM_API_KEY or OPENAI_API_KEY: NAME=value lines in this file (optional).
EnvironmentFile=-{env_file()}

[Install]
WantedBy=default.target
"""


def launchd_plist(command: list[str], log_dir: Path) -> bytes:
    return plistlib.dumps(
        {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": command,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},  # restart when it fails, not after a clean stop
            "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
            "StandardOutPath": str(log_dir / "loom.log"),
            "StandardErrorPath": str(log_dir / "loom.log"),
        }
    )


def kind_for_platform() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def unit_path(kind: str, directory: str | None = None) -> Path:
    if kind == "launchd":
        folder = Path(directory) if directory else Path("~/Library/LaunchAgents").expanduser()
        return folder / f"{LAUNCHD_LABEL}.plist"
    if directory:
        folder = Path(directory)
    else:
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        folder = Path(config_home) / "systemd" / "user"
    return folder / SYSTEMD_NAME


def render(kind: str, config: str | None) -> bytes:
    command = serve_command(config)
    if kind == "launchd":
        return launchd_plist(command, Path("~/Library/Logs").expanduser())
    return systemd_unit(command).encode()


def next_steps(kind: str, path: Path) -> list[str]:
    if kind == "launchd":
        return [f"launchctl bootstrap gui/$(id -u) {path}", f"launchctl kickstart -k gui/$(id -u)/{LAUNCHD_LABEL}"]
    return [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now loom",
        "loginctl enable-linger $USER    # keep it running when you are logged out",
        "journalctl --user -u loom -f    # its log",
    ]


def service_command(args: argparse.Namespace) -> int:
    kind = args.kind or kind_for_platform()
    path = unit_path(kind, args.dir)
    if args.service_command == "print":
        sys.stdout.write(render(kind, args.config).decode())
        return 0
    if args.service_command == "uninstall":
        if not path.exists():
            print(f"loom: no service file at {path}", file=sys.stderr)
            return 2
        path.unlink()
        stop = "systemctl --user disable --now loom" if kind == "systemd" else f"launchctl bootout gui/$(id -u) {path}"
        print(f"removed {path}; if it was running: {stop}")
        return 0
    content = render(kind, args.config)
    if path.exists() and path.read_bytes() != content and not args.force:
        print(f"loom: {path} exists and differs; --force replaces it", file=sys.stderr)
        return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    print(f"wrote {path}")
    print("start it now and at every login:")
    for line in next_steps(kind, path):
        print(f"  {line}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``service`` to the ``loom`` command."""
    service = sub.add_parser("service", help="run `loom serve` as a user service (systemd or launchd)")
    ssub = service.add_subparsers(dest="service_command", required=True)
    for name, text in (
        ("install", "write the unit (systemd) or agent (launchd) and say how to enable it"),
        ("print", "print it without writing"),
        ("uninstall", "remove it"),
    ):
        p = ssub.add_parser(name, help=text)
        p.add_argument("--kind", choices=["systemd", "launchd"], help="default: launchd on macOS, else systemd")
        p.add_argument("--dir", help="write into this folder instead of the standard one")
        if name != "uninstall":
            p.add_argument("--config", help="the config it serves (default: $LOOM_CONFIG or the user config)")
        if name == "install":
            p.add_argument("--force", action="store_true", help="replace a different existing file")
        p.set_defaults(func=service_command, config=None)
