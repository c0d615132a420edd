"""Signed file URLs (loom.daemon.storage.signing): the secret file, and what a signature allows."""

from __future__ import annotations

import stat
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from loom.daemon.storage.signing import SECRET_FILE, URLSigner, load_secret
from loom.sdk.errors import PermissionDenied


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    q = parse_qs(split.query)
    return split.path, q["exp"][0], q["sig"][0]


def test_the_secret_is_made_once_owner_only_and_kept(tmp_path):
    secret = load_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert len(secret) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(tmp_path) == secret  # a restart signs the same way: URLs outlive it


def test_a_signed_url_lets_its_path_in_until_it_expires(tmp_path):
    signer = URLSigner(load_secret(tmp_path), ttl=60)
    url = signer.sign("images/2026-12-07/ab12.png")
    path, exp, sig = parts(url)
    assert path == "/v1/files/images/2026-12-07/ab12.png"
    assert time.time() + 59 < int(exp) <= time.time() + 62
    assert signer.allows(path, exp, sig) is True
    assert signer.allows(path, None, None) is False  # no signature: the key decides


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda p, e, s: (p.replace("ab12", "cd34"), e, s), "invalid_signature"),  # another file
        (lambda p, e, s: (p, str(int(e) + 3600), s), "invalid_signature"),  # a longer life
        (lambda p, e, s: (p, e, s[:-2] + ("AA" if s[-2:] != "AA" else "BB")), "invalid_signature"),
        (lambda p, e, s: (p, e, None), "invalid_signature"),
        (lambda p, e, s: (p, None, s), "invalid_signature"),
        (lambda p, e, s: (p, "soon", s), "invalid_signature"),
        (lambda p, e, s: (p, "²", s), "invalid_signature"),
    ],
)
def test_an_altered_url_is_refused(tmp_path, change, code):
    signer = URLSigner(load_secret(tmp_path), ttl=60)
    path, exp, sig = change(*parts(signer.sign("images/2026-12-07/ab12.png")))
    with pytest.raises(PermissionDenied) as e:
        signer.allows(path, exp, sig)
    assert e.value.code == code


def test_an_expired_url_is_refused(tmp_path):
    signer = URLSigner(load_secret(tmp_path), ttl=60)
    path, exp, sig = parts(signer.sign("output/x/persona.png", now=time.time() - 120))
    with pytest.raises(PermissionDenied) as e:
        signer.allows(path, exp, sig)
    assert e.value.code == "url_expired"


def test_another_secret_does_not_verify(tmp_path):
    a = URLSigner(load_secret(tmp_path / "a"), ttl=60)
    b = URLSigner(load_secret(tmp_path / "b"), ttl=60)
    with pytest.raises(PermissionDenied):
        b.allows(*parts(a.sign("images/x.png")))


def test_a_signed_url_names_its_file_to_pipelines():
    from loom.sdk.storykit.media import file_path

    assert file_path("/v1/files/output/d/ses-1/x.png?exp=1&sig=abc") == "output/d/ses-1/x.png"
    assert file_path("http://127.0.0.1:1/v1/files/images/x.png?exp=1&sig=abc") == "images/x.png"


def test_storage_settings_that_cannot_work_stop_start_up(tmp_path, monkeypatch):
    from loom.daemon.storage.config import StorageConfig
    from loom.daemon.storage.service import Storage
    from loom.sdk.errors import ConfigError

    for ttl in ("never", 0, "0s", -1):
        with pytest.raises(ConfigError, match="url_ttl"):
            Storage.open(tmp_path, StorageConfig(url_ttl=ttl))
    with pytest.raises(ConfigError, match="bucket"):
        Storage.open(tmp_path, StorageConfig(backend="s3"))
    pytest.importorskip("boto3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        Storage.open(tmp_path, StorageConfig(backend="s3", bucket="b", region="us-east-1"))


def test_a_local_storage_signs_urls_and_result_trees(tmp_path):
    from loom.daemon.storage.config import StorageConfig
    from loom.daemon.storage.service import Storage

    storage = Storage.open(tmp_path, StorageConfig(url_ttl="60s"))
    assert storage.ttl == 60 and not storage.remote
    tree = {
        "image": {"url": "/v1/files/images/a.png", "path": "images/a.png"},
        "files": [{"url": "/v1/files/output/d/x.txt"}],
        "output_url": "/v1/files/output/d/",
        "n": 3,
    }
    signed = storage.sign_tree(tree)
    for url in (signed["image"]["url"], signed["files"][0]["url"]):
        path, exp, sig = parts(url)
        assert storage.signer.allows(path, exp, sig)
    assert signed["image"]["path"] == "images/a.png" and signed["n"] == 3
    assert signed["output_url"] == "/v1/files/output/d/"  # a folder is not a file
    assert storage.sign_tree(signed) == signed  # signed URLs are left as they are
    assert storage.url("images/a.png", "http://h:1").startswith("http://h:1/v1/files/images/a.png?exp=")


def test_a_url_signed_for_its_own_lifetime(tmp_path):
    """RouteContext.file_url(expires_in=60): seed 003's one-minute URLs, whatever url_ttl says."""
    from loom.daemon.storage.signing import PREFIX, URLSigner

    signer = URLSigner(b"s" * 32, ttl=3600)
    url = signer.sign("images/x.png", now=1000.0, ttl=60)
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    assert int(query["exp"]) == 1061  # 60 s, not the configured hour
    fresh = signer.sign("images/x.png", ttl=60)
    query = dict(part.split("=", 1) for part in fresh.split("?", 1)[1].split("&"))
    assert signer.allows(PREFIX + "images/x.png", query["exp"], query["sig"])
