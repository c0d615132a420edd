"""JWT bearer tokens ([daemon.jwt]), made here with PyJWT: HS256 with a secret from the
environment, RS256 with a JWKS file. ``sub`` is the principal, ``loom_role`` the role; a forged,
expired, not-yet-valid, wrong-audience, wrong-issuer or ``alg: none`` token is a 401 in each
dialect's shape, and no token reaches the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import anthropic
import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import Daemon, openai_client, write_config

SECRET = "jwt-test-secret-0123456789abcdef0123456789"
MODELS = """
[[models]]
id = "x-ok"
provider = "mock"
capabilities = ["chat", "completion", "embedding"]
"""
HS_CONFIG = (
    """
[daemon]
host = "127.0.0.1"

[daemon.jwt]
algorithm = "HS256"
secret = { env = "T_JWT_SECRET" }
audience = "loom"
issuer = "https://seed000.example"
leeway = 5
"""
    + MODELS
)


def claims(sub: str = "carol", **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "aud": "loom", "iss": "https://seed000.example", "iat": now, "exp": now + 300, **extra}


def hs(payload: dict, secret: str = SECRET, **kw) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", **kw)


@pytest.fixture(scope="module")
def hs_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jwt-hs")
    d = Daemon(write_config(tmp / "loom.toml", HS_CONFIG), tmp / "data", env={"T_JWT_SECRET": SECRET}).start()
    yield d
    d.stop()


def test_a_valid_token_works_with_the_openai_client(hs_daemon):
    token = hs(claims())
    c = openai_client(hs_daemon, key=token)
    assert [m.id for m in c.models.list().data] == ["x-ok"]
    answer = c.chat.completions.create(model="x-ok", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content


def test_sub_is_the_principal_and_the_role_claim_the_role(hs_daemon):
    carol, dave = hs(claims("carol")), hs(claims("dave"))
    admin = hs(claims("ops", loom_role="admin"))
    made = openai_client(hs_daemon, key=carol).responses.create(model="x-ok", input="hi").id
    # A later token of the same sub is the same principal.
    again = hs(claims("carol", jti="second"))
    assert openai_client(hs_daemon, key=again).responses.retrieve(made).id == made
    with pytest.raises(openai.NotFoundError):
        openai_client(hs_daemon, key=dave).responses.retrieve(made)
    assert openai_client(hs_daemon, key=admin).responses.retrieve(made).id == made
    # Only the admin claim opens /admin.
    assert httpx.get(f"{hs_daemon.url}/admin/scheduler", headers=bearer(admin)).status_code == 200
    assert httpx.get(f"{hs_daemon.url}/admin/scheduler", headers=bearer(carol)).status_code == 403


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bad_tokens() -> dict[str, tuple[str, str]]:
    """Each refused token, with a word the 401's message says about it."""
    now = int(time.time())
    unsigned = jwt.encode(claims(), None, algorithm="none")
    return {
        "forged": (hs(claims(), secret="another-secret-0123456789abcdef0123"), "signature"),
        "expired": (hs(claims(exp=now - 60)), "expired"),
        "not yet valid": (hs(claims(nbf=now + 600)), "not yet valid"),
        "wrong audience": (hs(claims(aud="someone-else")), "audience"),
        "wrong issuer": (hs(claims(iss="https://evil.example")), "issuer"),
        "no exp": (hs({k: v for k, v in claims().items() if k != "exp"}), "exp"),
        "alg none": (unsigned, "alg"),
        "tampered": (retag(hs(claims()), loom_role="admin"), "signature"),
        "no sub": (hs({k: v for k, v in claims().items() if k != "sub"}), "sub"),
    }


def retag(token: str, **extra) -> str:
    """The token with its claims changed and its signature kept (a forgery)."""
    header, _, signature = token.split(".")
    body = jwt.utils.base64url_encode(json.dumps(claims(**extra)).encode()).decode()
    return f"{header}.{body}.{signature}"


@pytest.mark.parametrize("case", list(bad_tokens()))
def test_bad_tokens_are_401_in_each_dialect(hs_daemon, case):
    token, word = bad_tokens()[case]
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client(hs_daemon, key=token).models.list()
    assert word in raised.value.message.lower(), raised.value.message
    ant = anthropic.Anthropic(base_url=hs_daemon.url, auth_token=token, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ant_raised:
        ant.messages.create(model="x-ok", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert ant_raised.value.body["type"] == "error" and ant_raised.value.body["error"]["type"] == "authentication_error"
    ollama = httpx.get(f"{hs_daemon.url}/api/tags", headers=bearer(token))
    assert ollama.status_code == 401 and isinstance(ollama.json()["error"], str)


def test_the_leeway_forgives_a_little_clock_skew(hs_daemon):
    token = hs(claims(exp=int(time.time()) - 2))  # expired two seconds ago; leeway = 5
    assert openai_client(hs_daemon, key=token).models.list().data


def test_no_token_reaches_the_log(hs_daemon):
    good, (bad, _) = hs(claims("erin")), bad_tokens()["forged"]
    openai_client(hs_daemon, key=good).models.list()
    with pytest.raises(openai.AuthenticationError):
        openai_client(hs_daemon, key=bad).models.list()
    log = hs_daemon.output()
    for token in (good, bad):
        for part in token.split("."):
            assert part not in log
    assert SECRET not in log


# --- RS256 with a JWKS file --------------------------------------------------------------------


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jwt-rs")
    key = rsa_key()
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    cfg = (
        f"""
[daemon]
host = "127.0.0.1"

[daemon.jwt]
algorithm = "RS256"
jwks = "{tmp / "jwks.json"}"
audience = "loom"
role_claim = "roles"
"""
        + MODELS
    )
    d = Daemon(write_config(tmp / "loom.toml", cfg), tmp / "data").start()
    yield d, key
    d.stop()


def hmac_token(payload: dict, secret: bytes) -> str:
    """An HS256 token signed by hand (PyJWT itself refuses a PEM key as an HMAC secret)."""
    part = jwt.utils.base64url_encode
    signing = (
        part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
        + b"."
        + part(json.dumps(payload).encode())
    )
    signature = part(hmac.new(secret, signing, hashlib.sha256).digest())
    return (signing + b"." + signature).decode()


def rs_token(key, payload: dict, kid: str = "k1") -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_rs256_with_a_jwks_file(rs):
    d, key = rs
    now = int(time.time())
    good = {"sub": "frank", "aud": "loom", "exp": now + 300}
    assert openai_client(d, key=rs_token(key, good)).models.list().data
    admin = rs_token(key, {**good, "roles": ["reader", "admin"]})
    assert httpx.get(f"{d.url}/admin/scheduler", headers=bearer(admin)).status_code == 200
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    refused = {
        "another key": rs_token(rsa_key(), good),
        "unknown kid": rs_token(key, good, kid="k9"),
        "expired": rs_token(key, {**good, "exp": now - 60}),
        "wrong audience": rs_token(key, {**good, "aud": "other"}),
        # HS256 signed with the public key as the secret: the algorithm-confusion attack.
        "hs256 with the public key": hmac_token(good, public_pem),
        "alg none": jwt.encode(good, None, algorithm="none"),
    }
    for case, token in refused.items():
        r = httpx.get(f"{d.url}/v1/models", headers=bearer(token))
        assert r.status_code == 401, case
        assert r.json()["error"]["type"] == "authentication_error", case


# --- ES256 with a JWKS URL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def jwks_server(tmp_path_factory):
    """A JWKS served over HTTP by the test (PyJWKClient fetches and caches it)."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from cryptography.hazmat.primitives.asymmetric import ec

    root = tmp_path_factory.mktemp("jwks-site")
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (root / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "e1", "use": "sig", "alg": "ES256"}]}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    server.shutdown()


def test_es256_with_a_jwks_url(tmp_path, jwks_server):
    url, key = jwks_server
    cfg = (
        f"""
[daemon]
host = "127.0.0.1"

[daemon.jwt]
algorithm = "ES256"
jwks = "{url}"
"""
        + MODELS
    )
    d = Daemon(write_config(tmp_path / "loom.toml", cfg), tmp_path / "data").start()
    try:
        now = int(time.time())
        good = jwt.encode({"sub": "gina", "exp": now + 300}, key, algorithm="ES256", headers={"kid": "e1"})
        assert openai_client(d, key=good).models.list().data
        from cryptography.hazmat.primitives.asymmetric import ec

        other = ec.generate_private_key(ec.SECP256R1())
        forged = jwt.encode({"sub": "gina", "exp": now + 300}, other, algorithm="ES256", headers={"kid": "e1"})
        with pytest.raises(openai.AuthenticationError):
            openai_client(d, key=forged).models.list()
    finally:
        d.stop()
