"""``Subject``: one provider instance under test, called the way the daemon calls it.

The daemon runs plain methods and generators on a worker's thread and ``async`` ones on an event
loop (see :mod:`loom.sdk.protocols`); the subject does the same from a test: sync calls directly,
async ones on one event loop it keeps for the provider's lifetime (so clients a provider opens stay on one loop). Every exception a
provider raises that is not a :class:`~loom.sdk.LoomError` fails the check that caused it: the
daemon could only report it as a 502 ``provider_error`` (and log its traceback as a plugin bug).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from typing import Any

import msgspec

from ..errors import ConfigError, LoomError, PluginError
from ..protocols import ModelSpec, RunContext, TextChunk
from ..types import Capability


class ProviderRaisedForeignError(AssertionError):
    """A provider raised something other than a Loom error (the daemon would answer 502)."""


def decode_options(provider_cls: type, options: Any) -> Any:
    """``options`` as the daemon decodes a ``[[models]].options`` table: strictly, into ``Options``."""
    options_type = getattr(provider_cls, "Options", msgspec.Struct)
    if isinstance(options, msgspec.Struct) and isinstance(options, options_type):
        return options
    if options_type is msgspec.Struct:  # the base class: the provider takes no options
        assert not options, f"{provider_cls.__name__} has no Options struct but was given {options!r}"
        return None
    return msgspec.convert(options or {}, options_type, strict=True)


class Subject:
    """A provider built from a :class:`ModelSpec`, loaded on ``device``, with its own event loop."""

    def __init__(
        self,
        provider_cls: type,
        options: Any = None,
        *,
        plugin_options: Any = None,
        capabilities: frozenset[Capability] | None = None,
        device: str = "cpu",
        data_dir: str = "",
        model_id: str = "conformance",
        settings: Any = None,
    ) -> None:
        self.cls = provider_cls
        self.settings = settings
        self.device = device
        declared = frozenset(getattr(provider_cls, "capabilities", ()))
        self.capabilities = declared if capabilities is None else frozenset(capabilities) & declared
        self.spec = ModelSpec(
            id=model_id,
            provider=getattr(provider_cls, "name", "?"),
            options=decode_options(provider_cls, options),
            plugin_options=plugin_options,
            capabilities=self.capabilities,
            device=device,
            data_dir=data_dir,
        )
        self._loop = asyncio.new_event_loop()
        self.provider: Any = None
        self.loaded = False

    # --- lifecycle ----------------------------------------------------------------------------

    def build(self) -> Any:
        if self.provider is None:
            self.provider = self.call(self.cls, self.spec)
        return self.provider

    def load(self) -> None:
        self.call(self.build().load, self.device)
        self.loaded = True

    def unload(self) -> None:
        if self.provider is not None and self.loaded:
            self.call(self.provider.unload)
        self.loaded = False

    def close(self) -> None:
        try:
            self.unload()
        finally:
            # Let work that unload() handed to the loop (closing an async client) run, then stop.
            self._loop.run_until_complete(asyncio.sleep(0.01))
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    # --- calling the provider -----------------------------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (awaiting it if it is async); a foreign exception fails the check."""
        with foreign_errors_fail(fn):
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._loop.run_until_complete(_await(result))
            return result

    def method(self, name: str) -> Callable[..., Any]:
        return getattr(self.build(), name)

    def iterate(self, produced: Any, what: str = "stream") -> Generator[Any, None, None]:
        """Iterate a provider's generator or async generator, one item at a time."""
        with foreign_errors_fail(what):
            if inspect.isawaitable(produced):
                produced = self._loop.run_until_complete(_await(produced))
        if hasattr(produced, "__anext__"):
            try:
                while True:
                    with foreign_errors_fail(what):
                        try:
                            item = self._loop.run_until_complete(produced.__anext__())
                        except StopAsyncIteration:
                            return
                    yield item
            finally:
                aclose = getattr(produced, "aclose", None)
                if aclose is not None and not self._loop.is_closed():
                    self._loop.run_until_complete(aclose())
        else:
            assert hasattr(produced, "__next__"), (
                f"{what} must return an iterator or async iterator of TextChunk, got {type(produced).__name__}"
            )
            iterator = iter(produced)
            try:
                while True:
                    with foreign_errors_fail(what):
                        try:
                            item = next(iterator)
                        except StopIteration:
                            return
                    yield item
            finally:
                close = getattr(produced, "close", None)
                if close is not None:
                    close()

    def stream(self, method: str, *args: Any, ctx: RunContext | None = None) -> list[TextChunk]:
        """All chunks of one ``chat``/``complete`` call."""
        ctx = ctx or RunContext(device=self.device)
        produced = self.call(self.method(method), *args, ctx)
        return list(self.iterate(produced, f"{method}()"))


class foreign_errors_fail:
    """Turn a non-Loom exception from provider code into a failed check that says so."""

    def __init__(self, what: Any) -> None:
        self.what = getattr(what, "__qualname__", None) or str(what)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        # BaseExceptions (pytest's skip/fail outcomes, KeyboardInterrupt) pass through untouched.
        loom_errors = (LoomError, ConfigError, PluginError, AssertionError)
        if error is None or not isinstance(error, Exception) or isinstance(error, loom_errors):
            return  # not swallowed: the exception (if any) goes on
        raise ProviderRaisedForeignError(
            f"{self.what} raised {type(error).__name__}: {error} -- providers raise loom.sdk errors "
            "(InvalidRequest, ProviderError, ...); anything else reaches the client as a 502 provider_error"
        ) from error


async def _await(awaitable: Any) -> Any:
    return await awaitable
