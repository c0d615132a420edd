"""The web UI's sessions: a cookie that names a role, never the key, signed, expiring, and void
once its key leaves the config; the secret kept (0600) across restarts."""

from __future__ import annotations

import os
import stat
import time

from loom.daemon.http import sessions as session
from loom.daemon.http.sessions import Sessions, load_secret
from loom.daemon.principals import Principal


class Ring:
    def __init__(self, keys):
        self.keys = [(k.encode(), Principal(f"p-{k}", role)) for k, role in keys]

    @property
    def enabled(self):
        return bool(self.keys)

    def role_of(self, presented):
        return next((p.role for k, p in self.keys if presented and presented.encode() == k), None)


def test_a_session_names_the_role_and_not_the_key(tmp_path):
    s = Sessions(load_secret(tmp_path), Ring([("k-user", "user"), ("k-admin", "admin")]))
    token = s.issue("k-admin")
    assert "k-admin" not in token and token.startswith("admin.")
    assert s.role_of(token) == "admin" and s.role_of(s.issue("k-user")) == "user"
    assert s.issue("wrong") is None
    assert s.principal_of(token) == Principal("p-k-admin", "admin")  # the key's principal, for the pages


def test_forged_expired_and_revoked_sessions_are_refused(tmp_path, monkeypatch):
    secret = load_secret(tmp_path)
    s = Sessions(secret, Ring([("k-user", "user")]))
    token = s.issue("k-user")
    _role, expiry, fingerprint, signature = token.split(".")
    assert s.role_of(f"admin.{expiry}.{fingerprint}.{signature}") is None  # the signature covers the role
    assert s.role_of(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert s.role_of("garbage") is None and s.role_of(None) is None
    # Another daemon's secret signs differently.
    assert Sessions(b"x" * 64, Ring([("k-user", "user")])).role_of(token) is None
    # The key left the config: its sessions end.
    assert Sessions(secret, Ring([("k-other", "user")])).role_of(token) is None
    monkeypatch.setattr(session.time, "time", lambda: time.time_ns() / 1e9 + session.SESSION_S + 1)
    assert s.role_of(token) is None


def test_the_secret_is_private_and_kept(tmp_path):
    first = load_secret(tmp_path)
    assert load_secret(tmp_path) == first and len(first) == 64
    assert stat.S_IMODE(os.stat(tmp_path / session.SECRET_FILE).st_mode) == 0o600
    (tmp_path / session.SECRET_FILE).write_bytes(b"short")  # a torn write: replaced
    assert len(load_secret(tmp_path)) == 64
