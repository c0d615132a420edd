"""One ``AsyncOpenAI`` client per configured instance, shared by every model served by it.

Models on one instance share its connection pool, and one close at shutdown releases it. The
client is built on first use, in the running event loop, and built again when the key (or a secret
header) in the environment changes, or when it is used from another event loop. Retries are the
``openai`` package's own (``max_retries`` = the instance's ``retries``: timeouts, connection
errors, 408, 409 and 5xx, with its backoff), except that a 429 is never retried here: it goes back
to Loom's router at once, which takes a fallback or hands the client the Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from dataclasses import dataclass
from typing import Any

from loom.sdk import AuthenticationFailed, EnvSecret

from .errors import Upstream, missing_key
from .options import Instance


@dataclass(frozen=True)
class Client:
    """A built client and what every call with it needs."""

    openai: Any  # openai.AsyncOpenAI
    #: Per-request options of the typed calls, and the same for ``client.post``.
    opts: dict[str, Any]
    post_opts: dict[str, Any]
    #: The values to scrub from messages: the key and secret headers.
    secrets: tuple[str, ...]


class InstanceClient:
    def __init__(self, name: str, instance: Instance) -> None:
        self.name, self.instance = name, instance
        self._built: Client | None = None
        self._sig: tuple | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, up: Upstream, *, need_key: bool = True) -> Client:
        """The client, (re)built if the environment's secrets changed; ``up`` names the model in
        the AuthenticationFailed raised when a key or secret header is not set (the key only when
        ``need_key``: a call that brings a key of its own does not need the instance's)."""
        key = None
        if self.instance.api_key is not None:
            key = self.instance.api_key.get()
            if key is None and need_key:
                raise missing_key(up)
        headers: dict[str, str] = {}
        for name, value in self.instance.headers.items():
            if isinstance(value, EnvSecret):
                resolved = value.get()
                if resolved is None:
                    raise AuthenticationFailed(
                        f"The model '{up.model}' needs the header {name} for instance "
                        f"'{self.name}': set the environment variable {value.env}",
                        code="provider_key_missing",
                    )
                headers[name] = resolved
            else:
                headers[name] = value
        sig = (key, tuple(sorted(headers.items())))
        loop = _running_loop()
        if self._built is None or sig != self._sig or loop is not self._loop:
            self.close()
            self._built = self._build(key, headers)
            self._sig, self._loop = sig, loop
            _quiet_http_logs()
        return self._built

    def _build(self, key: str | None, headers: dict[str, str]) -> Client:
        import openai

        secret_headers = [headers[n] for n, v in self.instance.headers.items() if isinstance(v, EnvSecret)]
        # Nothing from the environment of this process reaches the service unasked: no
        # OPENAI_ORG_ID / OPENAI_PROJECT_ID, and no Authorization header for a keyless instance
        # (the placeholder key only keeps the package from looking for OPENAI_API_KEY; the
        # header is left out per request, where the package accepts leaving it out).
        defaults: dict[str, Any] = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        defaults.update(headers)
        omit = {} if key else {"Authorization": openai.Omit()}
        client = _client_class()(
            base_url=self.instance.base_url,
            api_key=key or "unused",
            timeout=self.instance.timeout,
            max_retries=self.instance.retries,
            default_headers=defaults,
            # The package's aiohttp transport: the same client, retries and errors, with aiohttp's
            # C parser and connection pool under them instead of httpx's pure-Python ones (about
            # half the CPU per call to a local upstream, measured by bench/bench_gateway.py).
            http_client=openai.DefaultAioHttpClient(timeout=self.instance.timeout),
        )
        return Client(
            openai=client,
            opts={"extra_headers": omit} if omit else {},
            post_opts={"headers": omit} if omit else {},
            secrets=tuple(s for s in (key, *secret_headers) if s),
        )

    def close(self) -> None:
        """Close the client on the loop it was built on (from any thread); the next call builds anew."""
        built, self._built = self._built, None
        loop = self._loop
        if built is None or loop is None or loop.is_closed():
            return
        if _running_loop() is loop:
            loop.create_task(built.openai.close())
        else:
            asyncio.run_coroutine_threadsafe(built.openai.close(), loop)

    async def aclose(self) -> None:
        built, self._built = self._built, None
        if built is not None:
            await built.openai.close()


#: Instance config object (by identity) -> its client. An app's decoded [plugins.openai] options
#: are shared by all its models and live as long as the app; the entry goes with them.
_CLIENTS: dict[int, InstanceClient] = {}


def client_for(name: str, instance: Instance) -> InstanceClient:
    """The shared client of ``instance`` (the object every model of one app decodes to)."""
    key = id(instance)
    shared = _CLIENTS.get(key)
    if shared is None or shared.instance is not instance:
        shared = _CLIENTS[key] = InstanceClient(name, instance)
        weakref.finalize(instance, _CLIENTS.pop, key, None)
    return shared


@functools.cache
def _client_class() -> type:
    import openai

    class LoomAsyncOpenAI(openai.AsyncOpenAI):
        """``AsyncOpenAI`` that leaves a 429 to Loom's router instead of waiting it out."""

        def _should_retry(self, response) -> bool:
            return response.status_code != 429 and super()._should_retry(response)

    return LoomAsyncOpenAI


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _quiet_http_logs() -> None:
    """The HTTP library logs every request at INFO; Loom logs requests only at debug level."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
