"""API keys: every /v1 route needs one when keys are configured; compared, never logged."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import openai_client


def test_missing_key_is_401(keyed_daemon):
    r = httpx.get(f"{keyed_daemon.url}/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_wrong_key_is_401(keyed_daemon):
    with pytest.raises(openai.AuthenticationError):
        openai_client(keyed_daemon, key="wrong").models.list()


def test_user_and_admin_keys_reach_v1(keyed_daemon):
    for key in ("user-secret-1", "admin-secret-1"):
        assert openai_client(keyed_daemon, key=key).models.list().data


def test_health_needs_no_key(keyed_daemon):
    assert httpx.get(f"{keyed_daemon.url}/health").status_code == 200


def test_keys_never_logged(keyed_daemon):
    openai_client(keyed_daemon, key="user-secret-1").models.list()
    with pytest.raises(openai.AuthenticationError):
        openai_client(keyed_daemon, key="wrong-key-zz").models.list()
    log = keyed_daemon.output()
    assert "user-secret-1" not in log and "admin-secret-1" not in log and "wrong-key-zz" not in log
