"""From what an OpenAI-compatible service (or the network) did to Loom's domain errors.

The service's 400 stays a 400 with its message, 401/403 become 401 naming the key's variable, 429
keeps its Retry-After, timeouts become 504 and the rest 502. Nothing the service says about the key
is passed on: messages go through :func:`scrub`, and a refused key is reported in Loom's own words.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from loom.sdk.errors import (
    AuthenticationFailed,
    InvalidRequest,
    LoomError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)

_MAX_MESSAGE = 400
# What API keys look like in the wild ("sk-...", "xai-...", a masked "sk-ab***yz"), and bearer tokens.
_KEYLIKE = re.compile(r"\b(?:sk|xai|gsk|pk|rk|key|api)[-_][A-Za-z0-9_\-*.]{6,}", re.I)
_BEARER = re.compile(r"(bearer\s+)\S+", re.I)
_PROVIDED = re.compile(r"(incorrect api key provided:?\s*)\S+", re.I)


@dataclass(frozen=True)
class Upstream:
    """Who a call went to, for messages: never holds the key itself."""

    model: str  # Loom's public id
    instance: str
    url: str  # base URL without credentials
    key_env: str | None  # the variable the key is read from, if any
    timeout: float


def safe_url(url: str) -> str:
    """``url`` without user:password, query or fragment (they may carry credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove ``secrets`` and anything that looks like a key from ``text``; cut it short."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = _PROVIDED.sub(r"\1[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _KEYLIKE.sub("[redacted]", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def retry_after(headers) -> float:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date); 1 if absent."""
    if headers is None:
        return 1.0
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


def _detail(body: object, fallback: str) -> tuple[str, str | None, str | None]:
    """(message, param, code) from an OpenAI-shaped error body, or ``fallback``."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or fallback
        param, code = body.get("param"), body.get("code")
        return (
            str(message),
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )
    if isinstance(body, str) and body.strip():
        return body, None, None
    return fallback, None, None


def missing_key(up: Upstream) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"The model '{up.model}' needs an API key for instance '{up.instance}': "
        f"set the environment variable {up.key_env} and restart Loom",
        code="provider_key_missing",
    )


def from_status(status: int, body: object, headers, up: Upstream, secrets: tuple[str, ...]) -> LoomError:
    """The Loom error for an HTTP error answer of the service."""
    message, param, code = _detail(body, f"HTTP {status}")
    message = scrub(message, secrets)
    where = f"instance '{up.instance}' ({up.url})"
    if status in (401, 403):
        # The service's own words may quote (part of) the key: say it ourselves.
        if up.key_env:
            text = f"The service behind model '{up.model}' refused the API key from {up.key_env} ({status})"
        else:
            text = (
                f"The service behind model '{up.model}' wants an API key ({status}): "
                f'set api_key = {{ env = "..." }} on {where}'
            )
        return AuthenticationFailed(text, code="provider_auth_failed")
    if status == 429:
        return RateLimited(
            f"The service behind model '{up.model}' is rate limiting: {message}",
            retry_after=retry_after(headers),
        )
    if status == 404:
        # The model map points at something the service does not have: Loom's config, not the client.
        return ProviderError(f"{where} answered 404 for model '{up.model}': {message}")
    if 400 <= status < 500 and status not in (408, 409):
        return InvalidRequest(message, param=param, code=code)
    return ProviderError(f"{where} answered {status} for model '{up.model}': {message}")


def attempts_of(e: BaseException) -> int:
    """How many times the ``openai`` client sent the request that failed with ``e`` (it numbers
    its retries in the ``x-stainless-retry-count`` header)."""
    import openai

    if not isinstance(e, openai.APIError):
        return 1
    try:
        # An APIError's request is httpx's; reading it raises RuntimeError when there was none.
        return int(e.request.headers.get("x-stainless-retry-count", 0)) + 1
    except (RuntimeError, TypeError, ValueError):
        return 1


def from_exception(e: BaseException, up: Upstream, secrets: tuple[str, ...], attempts: int = 1) -> LoomError | None:
    """The Loom error for an exception raised by the ``openai`` package or its HTTP library;
    None for anything else (a bug, to surface as it is)."""
    import openai

    tries = f" (after {attempts} tries)" if attempts > 1 else ""
    where = f"instance '{up.instance}' ({up.url})"
    if isinstance(e, LoomError):
        return e
    if isinstance(e, openai.APIStatusError):
        return from_status(e.status_code, e.body, e.response.headers, up, secrets)
    if _timed_out(e, openai):
        return ProviderTimeout(f"{where} did not answer model '{up.model}' within {up.timeout:g}s{tries}")
    if isinstance(e, openai.APIConnectionError) or _is_http_error(e, ""):
        cause = e.__cause__ or e.__context__ or e
        reason = scrub(str(cause) or type(cause).__name__, secrets)
        return ProviderError(f"Lost the connection to {where} serving model '{up.model}'{tries}: {reason}")
    if isinstance(e, openai.APIError):  # e.g. an error event in the middle of a stream
        message, _param, _code = _detail(getattr(e, "body", None), e.message)
        return ProviderError(f"{where} failed while serving model '{up.model}': {scrub(message, secrets)}")
    if isinstance(e, openai.OpenAIError):
        return ProviderError(f"{where}: {scrub(str(e), secrets)}")
    return None


def _timed_out(e: BaseException, openai) -> bool:
    """Whether ``e`` means the service did not answer in time. The first error of the chain of
    causes decides when it comes from below the HTTP library (the socket, aiohttp): the package's
    aiohttp transport reports every failed connection as a timeout, a refused one included."""
    root = e
    for _ in range(16):  # a chain is a few links long; a cycle must not hang this
        if root.__cause__ is None:
            break
        root = root.__cause__
    if root is not e and (isinstance(root, OSError) or type(root).__module__.split(".")[0] == "aiohttp"):
        return isinstance(root, TimeoutError)
    return isinstance(e, openai.APITimeoutError) or _is_http_error(e, "Timeout")


def _is_http_error(e: BaseException, kind: str) -> bool:
    """An exception of httpx / httpx2 / httpcore (whichever the ``openai`` package runs on)."""
    module = type(e).__module__.split(".")[0]
    return module in ("httpx", "httpx2", "httpcore", "h11") and kind in type(e).__name__
