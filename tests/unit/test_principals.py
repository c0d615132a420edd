"""Principals and what they own: the file rule, and the stores' move of data from before owners
existed to the admin (once, when each store opens)."""

from __future__ import annotations

import sqlite3

from loom.daemon.jobs.store import JobStore
from loom.daemon.principals import LOCAL, UNOWNED, Principal, key_principal, may_read_file, owner_folder
from loom.daemon.records import RecordStore

ALICE, BOB, ADMIN = Principal("alice", "user"), Principal("bob", "user"), Principal("ops", "admin")


def test_a_principal_owns_its_own_and_an_admin_everything():
    assert ALICE.owns("alice") and not ALICE.owns("bob") and not ALICE.owns(UNOWNED) and not ALICE.owns(None)
    assert ADMIN.owns("alice") and ADMIN.owns(UNOWNED) and LOCAL.owns("anyone")
    assert ALICE.scope == "alice" and ADMIN.scope is None and LOCAL.scope is None


def test_a_keys_principal_is_its_name_or_a_stable_digest():
    assert key_principal("sk-1", "alice") == "alice"
    derived = key_principal("sk-1")
    assert derived == key_principal("sk-1") != key_principal("sk-2") and "sk-1" not in derived


def test_who_may_read_a_served_file():
    jobs = {"output/2026-12-07/ses-101010-aaaa": "alice", "output/2026-12-07/ses-111111-bbbb": "bob"}
    owner_of = jobs.get
    mine = owner_folder("images", "alice")
    assert may_read_file(ALICE, "output/2026-12-07/ses-101010-aaaa/image.png", owner_of)
    assert may_read_file(ALICE, "output/2026-12-07/ses-101010-aaaa", owner_of)  # its folder's index
    assert not may_read_file(BOB, "output/2026-12-07/ses-101010-aaaa/image.png", owner_of)
    # ".." cannot climb from one's own folder into another's.
    assert not may_read_file(BOB, "output/2026-12-07/ses-111111-bbbb/../ses-101010-aaaa/x.png", owner_of)
    assert may_read_file(ALICE, f"{mine}/2026-12-07/cafe.png", owner_of)
    assert may_read_file(ALICE, f"{owner_folder('images/rag', 'alice')}/2026-12-07/cafe.png", owner_of)
    assert not may_read_file(BOB, f"{mine}/2026-12-07/cafe.png", owner_of)
    # From before owners, made by no principal, or a folder above the jobs': the admin's.
    for path in ("images/2026-12-07/cafe.png", "output/2026-12-07", "output", "images", "output/x/y/../../.."):
        assert not may_read_file(ALICE, path, owner_of), path
        assert may_read_file(ADMIN, path, owner_of)
    assert owner_folder("images", UNOWNED) == "images"


def test_jobs_from_before_owners_become_the_admins_once(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for job_id, owner in (("j-key", "key-0123456789abcdef"), ("j-anon", "anonymous"), ("j-none", None)):
        store.create_job(job_id, "p", "x", b"{}", f"output/d/{job_id}", owner=owner or "")
    store.db.execute("update jobs set owner = null where id = 'j-none'")
    store.db.execute("PRAGMA user_version=1")  # as the release before owners left it
    store.close()
    store = JobStore(tmp_path / "jobs.db")
    assert {j["owner"] for j in store.list_jobs()} == {UNOWNED}
    assert store.list_jobs(owner="key-0123456789abcdef") == []
    # Once: a job made now keeps its owner across the next open.
    store.create_job("j-new", "p", "x", b"{}", "output/d/j-new", owner="alice")
    store.close()
    store = JobStore(tmp_path / "jobs.db")
    assert [j["id"] for j in store.list_jobs(owner="alice")] == ["j-new"]
    assert store.owner_of_output("output/d/j-new") == "alice" and store.owner_of_output("output/d/none") is None
    store.close()


def test_records_from_before_owners_become_the_admins(tmp_path):
    db = sqlite3.connect(tmp_path / "records.db")
    db.execute(
        "create table records (collection text not null, key text not null, data text not null, "
        "created_at real not null, updated_at real not null, primary key (collection, key))"
    )
    db.execute("insert into records values ('personas', 'ada', '{\"name\": \"Ada\"}', 1.0, 1.0)")
    db.commit()
    db.close()
    store = RecordStore(tmp_path / "records.db")
    assert store.get("personas", "Ada")["data"] == {"name": "Ada"}  # UNOWNED: the admin's
    assert store.get("personas", "Ada", "alice") is None
    store.upsert("personas", "Ada", fields={"name": "Ada", "by": "alice"}, owner="alice")
    assert store.get("personas", "Ada", "alice")["data"]["by"] == "alice"
    assert store.get("personas", "Ada")["data"] == {"name": "Ada"}  # two records of one name
    assert len(store.list("personas")) == 2 and len(store.list("personas", owner="alice")) == 1
    store.close()


def test_a_jwt_config_that_cannot_check_tokens_stops_start_up(tmp_path, monkeypatch):
    import pytest
    from loom.daemon.config import JwtConfig
    from loom.daemon.jwts import JWTVerifier
    from loom.sdk.config import EnvSecret
    from loom.sdk.errors import ConfigError

    monkeypatch.delenv("LOOM_T_NO_SECRET", raising=False)
    with pytest.raises(ConfigError, match="'secret'"):
        JWTVerifier(JwtConfig(algorithm="HS256"))
    with pytest.raises(ConfigError, match="LOOM_T_NO_SECRET"):
        JWTVerifier(JwtConfig(secret=EnvSecret("LOOM_T_NO_SECRET")))
    with pytest.raises(ConfigError, match="'jwks'"):
        JWTVerifier(JwtConfig(algorithm="RS256"))
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="is not a JWKS"):
        JWTVerifier(JwtConfig(algorithm="RS256", jwks=str(tmp_path / "jwks.json")))
    with pytest.raises(ConfigError, match="cannot read"):
        JWTVerifier(JwtConfig(algorithm="ES256", jwks=str(tmp_path / "missing.json")))
