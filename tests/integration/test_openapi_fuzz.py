"""Schemathesis fuzzes a live `loom serve` (mock models, API keys on) against its own OpenAPI
document with every check: no server errors, every answer and status as documented, schema-valid
requests served, schema-violating ones refused, 401 without a key, 405 with ``Allow``.

The budget is ``LOOM_FUZZ_EXAMPLES`` examples per operation: by default 5 (about four minutes
on two busy cores), 10 under ``CI=true``; ``make fuzz`` runs 100. The checks hold per operation
with schemathesis's own expected statuses; ``schemathesis.toml`` beside this file lists the few
operations allowed one more status, each with the rule OpenAPI cannot state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MOCK_CONFIG, Daemon, write_config

HERE = Path(__file__).resolve().parent
ADMIN_KEY = "fuzz-admin-key"
#: The mock config less the deliberately broken model (its 502s are what it is for).
FUZZ_CONFIG = MOCK_CONFIG.split('[[models]]\nid = "mock-broken"')[0].replace(
    '[daemon]\nhost = "127.0.0.1"\n',
    '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_FUZZ_ADMIN" }\nrole = "admin"\n',
)


def schemathesis_command() -> list[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return [st]


# About 270 s at 5 examples and 10 minutes at 10 on two busy cores (the suite's 300 s is too short).
@pytest.mark.timeout(1200)
def test_schemathesis_finds_nothing(tmp_path):
    command = schemathesis_command()
    examples = os.environ.get("LOOM_FUZZ_EXAMPLES", "10" if os.environ.get("CI") == "true" else "5")
    daemon = Daemon(
        write_config(tmp_path / "loom.toml", FUZZ_CONFIG), tmp_path / "data", env={"T_FUZZ_ADMIN": ADMIN_KEY}
    ).start()
    try:
        run = subprocess.run(
            [
                *command,
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{daemon.url}/docs/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                examples,
                "--workers",
                "2",
                "--seed",
                os.environ.get("LOOM_FUZZ_SEED", "17"),
                "--header",
                f"Authorization: Bearer {ADMIN_KEY}",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=tmp_path,
        )
        report = run.stdout + run.stderr
        (tmp_path / "schemathesis.txt").write_text(report)  # the whole report; the message is its end
        assert run.returncode == 0, f"{tmp_path / 'schemathesis.txt'}\n{report[-20_000:]}"
        assert "server error" not in report.lower()
        assert "Internal error" not in daemon.output(), "the daemon logged an unhandled error"
    finally:
        daemon.stop()
