"""Per-principal quotas (``[daemon.quotas]``): requests and tokens per minute, requests in flight.

What counts is a request that makes work: every POST under /v1 and /api (chat, completions,
responses, messages, embeddings, images, pipelines...). The key guard (:mod:`loom.daemon.api.auth`)
asks :meth:`Quotas.admit` once it knows the principal; past a limit the request is a
:class:`~loom.sdk.errors.QuotaExceeded`, a 429 with ``Retry-After`` in the route's dialect
(OpenAI, Anthropic, Ollama). Each counted answer, and each refusal, carries OpenAI's headers:
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests``
and the same three for ``-tokens`` (resets written as ``1s`` or ``6m0s``), for the limits set.
:func:`middleware` adds them to the response and gives the in-flight place back when the response
(or its stream) has ended.

Tokens are the ones the models report (prompt and completion of each final chunk), counted by
the scheduler for every call the request submits (:func:`current_meter`, taken with the call as
the upstream keys are): a stream is counted whether or not its client asked for usage, and ``n``
choices are ``n`` answers' tokens. A request is refused while the window holds the limit; the one
that crosses it is not cut short (what it will use is not known when it starts).

The window is a sliding 60 seconds, in memory: a restart forgets it. Quotas need principals, so a
daemon without keys has none.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Limits:
    """One principal's limits; 0 is none."""

    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int


@dataclass
class _Usage:
    started: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    tokens_in_window: int = 0
    in_flight: int = 0

    def forget(self, now: float) -> None:
        """Drop what left the window."""
        while self.started and self.started[0] <= now - WINDOW_S:
            self.started.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.tokens_in_window -= self.tokens.popleft()[1]


@dataclass
class Place:
    """An admitted request's share of its principal's quota: the headers it answers with, its
    in-flight place until :meth:`release`, and the meter its model calls count tokens with."""

    headers: dict[str, str]
    _release: Callable[[], None] | None = None
    meter: Callable[[Any], None] | None = None

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


#: The meter of the request the current task serves; the scheduler takes it with each call it
#: submits (as it takes the upstream keys), so a call's tokens count against its principal.
_meter: ContextVar[Callable[[Any], None] | None] = ContextVar("loom_quota_meter", default=None)


def current_meter() -> Callable[[Any], None] | None:
    return _meter.get()


def tokens_of(value: Any) -> int:
    """The tokens a call's result (or a stream's chunk) reports: a final text chunk's prompt and
    completion tokens; a list's, summed (a collected stream, ``n`` answers)."""
    if isinstance(value, list):
        return sum(tokens_of(v) for v in value)
    done = getattr(value, "completion_tokens", None)
    if not isinstance(done, int):
        return 0
    prompt = getattr(value, "prompt_tokens", None)
    return done + (prompt if isinstance(prompt, int) else 0)


class Quotas:
    def __init__(self, config: QuotasConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._usage: dict[str, _Usage] = {}

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.requests_per_minute or c.tokens_per_minute or c.max_concurrent or c.principals)

    def limits(self, principal: str) -> Limits:
        """``principal``'s limits: its own where ``[daemon.quotas.principals.<name>]`` sets them."""
        c = self.config
        own = c.principals.get(principal)

        def pick(name: str) -> int:
            mine = getattr(own, name) if own is not None else None
            return getattr(c, name) if mine is None else mine

        return Limits(pick("requests_per_minute"), pick("tokens_per_minute"), pick("max_concurrent"))

    def admit(self, principal: str) -> Place:
        """Take a place for one request of ``principal``, or raise :class:`Refused` (whose
        ``headers`` the answer carries too)."""
        limits = self.limits(principal)
        if not (limits.requests_per_minute or limits.tokens_per_minute or limits.max_concurrent):
            return Place({})
        now = self._clock()
        usage = self._usage.setdefault(principal, _Usage())
        usage.forget(now)
        rpm, tpm, conc = limits.requests_per_minute, limits.tokens_per_minute, limits.max_concurrent
        if rpm and len(usage.started) >= rpm:
            wait = usage.started[0] + WINDOW_S - now
            raise Refused(
                f"Rate limit reached for '{principal}': {rpm} requests per minute; retry in {duration(wait)}",
                wait,
                _headers(limits, usage, now),
            )
        if tpm and usage.tokens_in_window >= tpm:
            wait = _tokens_reset(usage, tpm, now)
            raise Refused(
                f"Rate limit reached for '{principal}': {tpm} tokens per minute "
                f"(used {usage.tokens_in_window}); retry in {duration(wait)}",
                wait,
                _headers(limits, usage, now),
            )
        if conc and usage.in_flight >= conc:
            raise Refused(
                f"Rate limit reached for '{principal}': {conc} request{'s' if conc != 1 else ''} at once; "
                "retry when one has ended",
                1.0,
                _headers(limits, usage, now),
            )
        usage.started.append(now)
        usage.in_flight += 1

        def release() -> None:
            usage.in_flight -= 1

        def meter(value: Any) -> None:
            n = tokens_of(value)
            if n:
                usage.tokens.append((self._clock(), n))
                usage.tokens_in_window += n

        return Place(_headers(limits, usage, now), release, meter if tpm else None)


def _tokens_reset(usage: _Usage, tpm: int, now: float) -> float:
    """Seconds until the window holds fewer than ``tpm`` tokens again."""
    left = usage.tokens_in_window
    for at, n in usage.tokens:
        left -= n
        if left < tpm:
            return at + WINDOW_S - now
    return 0.0


def _headers(limits: Limits, usage: _Usage, now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the limits that are set."""
    headers: dict[str, str] = {}
    if limits.requests_per_minute:
        reset = usage.started[0] + WINDOW_S - now if usage.started else 0.0
        headers["x-ratelimit-limit-requests"] = str(limits.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limits.requests_per_minute - len(usage.started)))
        headers["x-ratelimit-reset-requests"] = duration(reset)
    if limits.tokens_per_minute:
        tpm = limits.tokens_per_minute
        headers["x-ratelimit-limit-tokens"] = str(tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, tpm - usage.tokens_in_window))
        headers["x-ratelimit-reset-tokens"] = duration(_tokens_reset(usage, tpm, now) if usage.tokens else 0.0)
    return headers


class Refused(QuotaExceeded):
    """A QuotaExceeded with the headers its 429 carries (the middleware adds them)."""

    def __init__(self, message: str, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers


def counts(connection: ASGIConnection) -> bool:
    """Whether the request is one a quota counts: a POST (over HTTP)."""
    return connection.scope["type"] == "http" and connection.scope.get("method") == "POST"


def hold(connection: ASGIConnection, place: Place) -> None:
    """Keep the place on the connection (for the middleware) and make its meter the one this
    request's model calls count with."""
    connection.state[STATE_KEY] = place
    if place.meter is not None:
        _meter.set(place.meter)


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
