"""Per-principal quotas (``[daemon.quotas]``): requests per minute and requests in flight.

What counts is a request that makes work: every POST under /v1 and /api (chat, completions,
responses, messages, embeddings, images, pipelines...), whatever it asks for: a streamed answer
holds its place in ``max_concurrent`` until the stream ends, and ``n`` choices are one request of
one principal's. The key guard (:mod:`loom.daemon.api.auth`) asks :meth:`Quotas.admit` once it
knows the principal; past a limit the request is a :class:`~loom.sdk.errors.QuotaExceeded`,
a 429 with ``Retry-After`` in the route's dialect (OpenAI, Anthropic, Ollama). Each admitted or
refused request carries OpenAI's headers: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests`` and ``x-ratelimit-reset-requests`` (when the window frees
its next place, as ``1s`` or ``6m0s``). :func:`middleware` adds them to the response and gives
the in-flight place back when the response (or its stream) has ended.

The window is a sliding 60 seconds, in memory: a restart forgets it. Quotas need principals, so
a daemon without keys has none.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from loom.sdk.errors import QuotaExceeded

from .config import QuotasConfig

WINDOW_S = 60.0
#: Where the guard leaves the request's place (scope state), for the middleware.
STATE_KEY = "loom_quota"


def duration(seconds: float) -> str:
    """A wait as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


@dataclass
class _Usage:
    started: deque[float] = field(default_factory=deque)
    in_flight: int = 0


@dataclass
class Place:
    """An admitted request's share of its principal's quota: the headers it answers with, and
    its in-flight place until :meth:`release`."""

    headers: dict[str, str]
    _release: Callable[[], None] | None = None

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class Quotas:
    def __init__(self, config: QuotasConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._usage: dict[str, _Usage] = {}

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.requests_per_minute or c.max_concurrent or c.principals)

    def limits(self, principal: str) -> tuple[int, int]:
        """(requests per minute, in flight) for ``principal``; 0 is no limit."""
        c = self.config
        own = c.principals.get(principal)
        rpm = own.requests_per_minute if own is not None and own.requests_per_minute is not None else None
        conc = own.max_concurrent if own is not None and own.max_concurrent is not None else None
        return (c.requests_per_minute if rpm is None else rpm, c.max_concurrent if conc is None else conc)

    def admit(self, principal: str) -> Place:
        """Take a place for one request of ``principal``, or raise :class:`Refused` (whose
        ``headers`` the answer carries too)."""
        rpm, conc = self.limits(principal)
        if not rpm and not conc:
            return Place({})
        now = self._clock()
        usage = self._usage.setdefault(principal, _Usage())
        while usage.started and usage.started[0] <= now - WINDOW_S:
            usage.started.popleft()
        if rpm and len(usage.started) >= rpm:
            wait = usage.started[0] + WINDOW_S - now
            raise _exceeded(
                f"Rate limit reached for '{principal}': {rpm} requests per minute; retry in {duration(wait)}",
                wait,
                _headers(rpm, 0, wait),
            )
        if conc and usage.in_flight >= conc:
            raise _exceeded(
                f"Rate limit reached for '{principal}': {conc} request{'s' if conc != 1 else ''} at once; "
                "retry when one has ended",
                1.0,
                _headers(rpm, rpm - len(usage.started), _reset(usage, now)) if rpm else {},
            )
        usage.started.append(now)
        usage.in_flight += 1

        def release() -> None:
            usage.in_flight -= 1
            if not usage.in_flight and not usage.started:
                self._usage.pop(principal, None)

        headers = _headers(rpm, rpm - len(usage.started), _reset(usage, now)) if rpm else {}
        return Place(headers, release)


def _reset(usage: _Usage, now: float) -> float:
    return usage.started[0] + WINDOW_S - now if usage.started else 0.0


def _headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(0, remaining)),
        "x-ratelimit-reset-requests": duration(reset),
    }


class Refused(QuotaExceeded):
    """A QuotaExceeded with the headers its 429 carries (the middleware adds them)."""

    def __init__(self, message: str, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers


def _exceeded(message: str, retry_after: float, headers: dict[str, str]) -> Refused:
    return Refused(message, retry_after, headers)


def counts(connection: ASGIConnection) -> bool:
    """Whether the request is one a quota counts: a POST (over HTTP)."""
    return connection.scope["type"] == "http" and connection.scope.get("method") == "POST"


def hold(connection: ASGIConnection, place: Place) -> None:
    connection.state[STATE_KEY] = place


def refused(connection: ASGIConnection, error: Refused) -> None:
    connection.state[STATE_KEY] = Place(error.headers)


def middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: the quota headers on the response, and the place given back at its end
    (after the last byte of a stream, or when the client went away)."""

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                place = scope.get("state", {}).get(STATE_KEY)
                if isinstance(place, Place) and place.headers:
                    extra = [(k.encode(), v.encode()) for k, v in place.headers.items()]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            place = scope.get("state", {}).get(STATE_KEY)
            if isinstance(place, Place):
                place.release()

    return run
