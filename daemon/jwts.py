"""JWT bearer tokens (``[daemon.jwt]``): a front end's own users reach Loom with the tokens it
already hands them, instead of one static key each.

A token is checked with PyJWT: its signature with the configured algorithm only (so ``alg:
none`` and an HS256 token signed with a public key are refused), ``exp`` (required) and
``nbf``, ``aud`` and ``iss`` when configured, with ``leeway`` seconds of clock skew. ``sub``
names the principal; the claim ``role_claim`` makes it an admin when it is ``"admin"`` (or a
list holding it), a user otherwise. HS* tokens are checked with a secret from the environment;
RS*/ES*/PS* tokens with a JWKS, read from a file at start-up or fetched from a URL (PyJWKClient,
which caches the set and refetches it for an unknown ``kid``).

A bad token is a 401 whose message says what was wrong with it (expired, wrong audience...);
neither the token nor its claims are ever logged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from loom.sdk.errors import AuthenticationFailed, ConfigError

from .config import JwtConfig
from .principals import Principal

#: What every token must carry: a principal, and an end.
REQUIRED = ["exp", "sub"]


class JWTVerifier:
    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self.algorithm = config.algorithm
        self._secret: str | None = None
        self._jwks: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        where = "$.daemon.jwt"
        if self.algorithm.startswith("HS"):
            if config.secret is None or config.jwks:
                raise ConfigError(
                    f"{where}: {self.algorithm} checks tokens with 'secret' (from the environment), not 'jwks'"
                )
            self._secret = config.secret.resolve(f"{where}.secret")
        else:
            if not config.jwks or config.secret is not None:
                raise ConfigError(f"{where}: {self.algorithm} checks tokens with 'jwks' (a file or URL), not 'secret'")
            if config.jwks.startswith(("https://", "http://")):
                self._client = jwt.PyJWKClient(config.jwks, cache_keys=True)
            else:
                self._jwks = _read_jwks(Path(config.jwks).expanduser(), f"{where}.jwks")

    @property
    def remote(self) -> bool:
        """Whether checking a token may fetch the key set (so it is done off the event loop)."""
        return self._client is not None

    def principal(self, token: str) -> Principal:
        """The principal a valid token names; AuthenticationFailed saying what is wrong otherwise."""
        c = self.config
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=[self.algorithm],
                audience=c.audience or None,
                issuer=c.issuer or None,
                leeway=c.leeway,
                options={"require": REQUIRED + (["aud"] if c.audience else []) + (["iss"] if c.issuer else [])},
            )
        except jwt.PyJWTError as e:
            raise AuthenticationFailed(f"The bearer token was refused: {_reason(e)}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise AuthenticationFailed("The bearer token was refused: its 'sub' claim names no one")
        role = claims.get(c.role_claim)
        admin = role == "admin" or (isinstance(role, list) and "admin" in role)
        return Principal(name=sub, role="admin" if admin else "user")

    def _key(self, token: str) -> Any:
        if self._secret is not None:
            return self._secret
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if self._client is not None:
                return self._client.get_signing_key_from_jwt(token).key
            assert self._jwks is not None
            if kid is None:
                if len(self._jwks.keys) != 1:
                    raise AuthenticationFailed("The bearer token was refused: it names no key ('kid')")
                return self._jwks.keys[0].key
            return self._jwks[kid].key
        except KeyError:
            raise AuthenticationFailed("The bearer token was refused: its key ('kid') is not in the JWKS") from None
        except jwt.PyJWTError as e:
            raise AuthenticationFailed(f"The bearer token was refused: {_reason(e)}") from None


def _read_jwks(path: Path, where: str) -> jwt.PyJWKSet:
    try:
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text()))
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {path} ({e.strerror or e})") from None
    except (ValueError, jwt.PyJWTError) as e:
        raise ConfigError(f"{where}: {path} is not a JWKS ({e})") from None


def _reason(e: jwt.PyJWTError) -> str:
    """PyJWT's own words, lower-cased to follow a colon ("signature has expired")."""
    text = str(e) or type(e).__name__
    return text[0].lower() + text[1:]
