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
