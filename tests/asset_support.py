"""Files the tests read that are not the project's own code (OpenAI's OpenAPI document), and
what a test does when one is missing.

A missing asset skips the test on a developer's machine (``missing()``), but under ``CI=true``
the run must not pass without what it was meant to check: ``tests/conftest.py`` turns these
skips, and only these, into failures there.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


class MissingAsset(pytest.skip.Exception):
    """A skip because a test asset is not on this machine (a failure under ``CI=true``)."""


def in_ci() -> bool:
    """``CI`` is set the way CI services set it (GitHub, GitLab: ``true``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """Skip the calling test because an asset is missing; ``reason`` says which and where it was looked for."""
    raise MissingAsset(f"test asset missing: {reason}", allow_module_level=True)
