"""``loom service``: the systemd unit and launchd agent it writes, into temp dirs only (the real
system is never touched; ``systemd-analyze verify`` checks the unit where it is installed)."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys

import pytest

from tests.integration.cli_support import loom, sandbox


def test_install_writes_a_systemd_user_unit_that_runs_loom_serve(tmp_path):
    env = sandbox(tmp_path)
    config = tmp_path / "my config.toml"
    r = loom("service", "install", "--kind", "systemd", "--config", str(config), env=env)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "loom.service"  # $XDG_CONFIG_HOME/systemd/user
    assert f"wrote {unit}" in r.stdout
    assert "systemctl --user enable --now loom" in r.stdout and "loginctl enable-linger" in r.stdout
    text = unit.read_text()
    assert f'ExecStart={sys.executable} -m loom.daemon.cli serve --config "{config}"\n' in text
    assert "Restart=on-failure\n" in text and "WantedBy=default.target\n" in text
    assert f"EnvironmentFile=-{tmp_path / 'config' / 'loom' / 'env'}\n" in text
    assert loom("service", "print", "--kind", "systemd", "--config", str(config), env=env).stdout == text

    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr

    # The same unit again is fine; a different one needs --force.
    assert loom("service", "install", "--kind", "systemd", "--config", str(config), env=env).returncode == 0
    r = loom("service", "install", "--kind", "systemd", env=env)
    assert r.returncode == 2 and "exists and differs; --force replaces it" in r.stderr
    assert loom("service", "install", "--kind", "systemd", "--force", env=env).returncode == 0
    assert "--config" not in unit.read_text()  # the user config, found at run time

    r = loom("service", "uninstall", "--kind", "systemd", env=env)
    assert r.returncode == 0 and not unit.exists()
    assert loom("service", "uninstall", "--kind", "systemd", env=env).returncode == 2


def test_install_writes_a_launchd_agent(tmp_path):
    env = sandbox(tmp_path, LOOM_CONFIG=str(tmp_path / "loom.toml"))
    agents = tmp_path / "LaunchAgents"
    r = loom("service", "install", "--kind", "launchd", "--dir", str(agents), env=env)
    assert r.returncode == 0, r.stderr
    plist = plistlib.loads((agents / "org.loom.serve.plist").read_bytes())
    assert plist["Label"] == "org.loom.serve"
    assert plist["ProgramArguments"] == [
        sys.executable,
        "-m",
        "loom.daemon.cli",
        "serve",
        "--config",
        str(tmp_path / "loom.toml"),  # LOOM_CONFIG at install time, made absolute
    ]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardOutPath"].endswith("Library/Logs/loom.log")
    assert "launchctl bootstrap gui/$(id -u)" in r.stdout


@pytest.mark.parametrize("kind", ["systemd", "launchd"])
def test_the_service_command_starts_loom(kind, tmp_path):
    """What the unit runs is a working command: its --help answers (serve itself is tested elsewhere)."""
    env = sandbox(tmp_path)
    out = loom("service", "print", "--kind", kind, env=env).stdout
    if kind == "launchd":
        command = plistlib.loads(out.encode())["ProgramArguments"]
    else:
        command = next(line for line in out.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1].split()
    r = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: loom serve" in r.stdout
