"""One model's provider, hosted where it runs: a worker process (:mod:`.child`) or a Ray actor
(:mod:`.ray_actor`).

The one place that turns a :class:`~.base.WorkerSpec` into a loaded provider (the class imported
by name, its options decoded again with its own types), runs :class:`~loom.sdk.calls.Call` s on
it, measures what it holds and unloads it. How messages reach it (a socket, Ray method calls) is
the caller's business; this module knows nothing of either.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from loom.sdk.calls import Call
from loom.sdk.errors import Cancelled
from loom.sdk.protocols import Provider, RunContext

from .base import LoadReport, WorkerMemory, WorkerSpec, import_name
from .memory import rss, trim
from .nvml import GpuMeter, Nvml


def build_provider(spec: WorkerSpec) -> Provider:
    """The provider object for ``spec`` (not loaded): the class imported by name, the model's
    options (and its plugin's) decoded again with their own types."""
    cls = import_name(spec.provider)
    model = spec.spec
    options = model.options
    if options is not None:
        options = msgspec.convert(options, cls.Options, strict=False)
    plugin_options = model.plugin_options
    if plugin_options is not None and spec.plugin_options_type is not None:
        plugin_options = msgspec.convert(plugin_options, import_name(spec.plugin_options_type), strict=False)
    return cls(msgspec.structs.replace(model, options=options, plugin_options=plugin_options))


class ModelHost:
    """A loaded model in a worker: ``load``, then ``run`` calls (from several threads at once when
    the model allows), ``memory`` at any time, ``unload`` at the end. Memory is measured for the
    whole process this runs in (it holds nothing else)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.device = spec.device
        self.provider: Provider | None = None
        self.gpu: GpuMeter | None = None

    def load(self) -> LoadReport:
        """Build and load the provider; raises the load's error."""
        t0 = time.monotonic()
        if self.device.startswith("cuda"):
            self.gpu = GpuMeter(Nvml(), int(self.device.partition(":")[2] or 0), os.getpid())
            self.gpu.start()
        provider = build_provider(self.spec)
        provider.load(self.device)
        self.provider = provider
        memory = self.memory()
        return LoadReport(
            seconds=time.monotonic() - t0, reported=memory.reported, measured=memory.on(self.device), whole=True
        )

    def run(self, call: Call, ctx: RunContext, stream: bool, emit: Callable[[Any], None]) -> Any:
        """Run ``call``. A stream calls ``emit(chunk)`` for each chunk as it comes and returns
        None; a call returns its value (a streaming call's chunks as a list). Raises the
        provider's error; a cancelled ``ctx`` stops a stream at its next chunk."""
        produced: Any = None
        try:
            produced = call.apply(self.provider, ctx)
            if inspect.isasyncgen(produced) or inspect.isawaitable(produced):
                # A local provider with ``async`` methods: run it on a loop of this thread.
                return asyncio.run(_drain_async(produced, ctx, emit if stream else None))
            if stream:
                for chunk in produced:
                    if ctx.cancelled:
                        raise Cancelled("cancelled")
                    emit(chunk)
                return None
            if inspect.isgenerator(produced):
                produced = list(produced)
            return produced
        finally:
            close = getattr(produced, "close", None)
            if close is not None and inspect.isgenerator(produced):
                close()

    def memory(self) -> WorkerMemory:
        reported = 0
        if self.provider is not None:
            try:
                reported = max(0, int(self.provider.memory_bytes()))
            except Exception:
                reported = 0
        devices = {}
        if self.gpu is not None:
            held = self.gpu.read()
            if held is not None:
                devices[self.device] = held
        return WorkerMemory(host=rss(), devices=devices, reported=reported)

    def unload(self) -> int | None:
        """Unload the provider; returns what the process held on the model's device before."""
        freed = self.memory().on(self.device)
        if self.provider is not None:
            try:
                self.provider.unload()
            except Exception as e:
                print(f"loom worker: unload raised {type(e).__name__}: {e}", file=sys.stderr)
            self.provider = None
        trim()
        return freed


async def _drain_async(produced: Any, ctx: RunContext, emit: Callable[[Any], None] | None) -> Any:
    if inspect.isawaitable(produced) and not inspect.isasyncgen(produced):
        produced = await produced
    if not inspect.isasyncgen(produced):
        return produced
    out = []
    async for chunk in produced:
        if ctx.cancelled:
            raise Cancelled("cancelled")
        if emit is not None:
            emit(chunk)
        else:
            out.append(chunk)
    return None if emit is not None else out
