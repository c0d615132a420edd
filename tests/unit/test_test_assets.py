"""A missing test asset skips on a developer's machine and fails under ``CI=true`` (the hook in
``tests/conftest.py``); OpenAI's document is used only at the pinned version."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import openai_schema

ROOT = Path(__file__).resolve().parents[2]


def run_inner(tmp_path: Path, ci: str | None) -> str:
    """Run a test that misses an asset, and one that skips for another reason, in a child pytest
    with the suite's hook; its one-line summary."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from tests.asset_support import missing

            def test_needs_an_asset():
                missing("the thing")

            def test_skips_for_its_own_reason():
                pytest.skip("not this platform")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the child needs no plugin; loading them all takes seconds
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return run.stdout.strip().splitlines()[-1]


def test_a_missing_asset_skips_outside_ci(tmp_path):
    assert "2 skipped" in run_inner(tmp_path, None)


def test_a_missing_asset_fails_under_ci_and_other_skips_stay_skips(tmp_path):
    summary = run_inner(tmp_path, "true")
    assert "1 failed" in summary and "1 skipped" in summary, summary


def test_a_document_other_than_the_pinned_one_is_refused(tmp_path, monkeypatch):
    other = tmp_path / "openapi.yaml"
    other.write_text("openapi: 3.1.0\n")
    monkeypatch.setattr(openai_schema, "CANDIDATES", [other])
    with pytest.raises(AssertionError, match="not the pinned"):
        openai_schema.require_document()
