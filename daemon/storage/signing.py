"""Signed, expiring file URLs: ``/v1/files/<path>?exp=<unix>&sig=<hmac>``.

A browser cannot send an API key with an ``<img src>``; a signed URL stands in for the key for
one path until ``exp``. The signature is HMAC-SHA256 over the expiry and the path, keyed with a
secret Loom keeps in its data dir (``files.secret``, mode 0600, made on first start), so URLs
survive a restart and deleting the file revokes every URL handed out. A URL that carries a
signature is judged by it alone: expired, altered, or moved to another path, it is a 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import quote

from loom.sdk.errors import PermissionDenied

from ..atomic import secret_file

SECRET_FILE = "files.secret"
PREFIX = "/v1/files/"


def load_secret(data_dir: Path) -> bytes:
    """The URL signing secret (:func:`~loom.daemon.atomic.secret_file`)."""
    return secret_file(Path(data_dir) / SECRET_FILE)


class URLSigner:
    """Signs and checks ``/v1/files/`` URLs with one secret; ``ttl`` is their lifetime in seconds."""

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._key = hmac.new(secret, b"loom file urls", hashlib.sha256).digest()
        self.ttl = ttl

    def _sig(self, path: str, exp: int) -> str:
        mac = hmac.new(self._key, f"{exp}\n{path}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, rel: str, now: float | None = None, ttl: float | None = None) -> str:
        """The signed URL (path and query) of the data-dir-relative ``rel``, valid ``ttl`` seconds
        (default: the configured lifetime)."""
        path = PREFIX + rel.lstrip("/")
        life = self.ttl if ttl is None else ttl
        exp = int((time.time() if now is None else now) + life) + 1  # never shorter than its life
        return f"{quote(path, safe='/')}?exp={exp}&sig={self._sig(path, exp)}"

    def allows(self, path: str, exp: str | None, sig: str | None) -> bool:
        """Whether a request for ``path`` (the URL's decoded path) is let in by its signature.

        False when it carries none (the key decides); True when it is valid and unexpired; a
        :class:`PermissionDenied` (403) when it carries one that is malformed, altered, for another
        path, or expired."""
        if exp is None and sig is None:
            return False
        if not exp or not sig or not (exp.isascii() and exp.isdigit()) or len(exp) > 12:
            raise PermissionDenied(
                "A signed file URL needs both 'exp' and 'sig'", param="sig", code="invalid_signature"
            )
        if not hmac.compare_digest(sig.encode(), self._sig(path, int(exp)).encode()):
            raise PermissionDenied(
                "The file URL's signature does not match its path and expiry", param="sig", code="invalid_signature"
            )
        if int(exp) < time.time():
            raise PermissionDenied(
                "The file URL has expired: ask for the file's URL again", param="exp", code="url_expired"
            )
        return True
