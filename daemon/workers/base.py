"""The executor seam: an :class:`Executor` starts a :class:`Worker` that holds one loaded model.

The scheduler decides what is resident and what runs; executors only carry it out. A worker is
started by a model's load and stopped by its unload, runs calls (several at once when the model
allows), says how much memory it holds, and reports when it is gone (stopped, crashed, killed).

Nothing in these interfaces assumes shared memory: calls are :class:`~loom.sdk.calls.Call`
structs, results and chunks are the call's ``returns`` type, errors are ``loom.sdk.errors``
classes, memory is a struct of byte counts. The in-process executor passes objects through; the
subprocess executor encodes them on a socket (:mod:`.wire`); an executor whose workers live on
another machine (Ray actors) implements the same two protocols.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from loom.sdk.calls import Call
from loom.sdk.protocols import ModelSpec, Provider, RunContext
from msgspec import Struct

if TYPE_CHECKING:
    from ..models import ModelEntry

#: What a worker runs: a provider call as data, or (in process only: the scheduler's own tests)
#: a function of ``(provider, ctx)``.
Work = Call | Callable[[Provider, RunContext], Any]


class WorkerSpec(Struct, frozen=True, kw_only=True):
    """Everything a worker needs to load a model, as data (it crosses to the worker process)."""

    model: str
    #: The provider class as ``"module:qualname"``; the worker imports it.
    provider: str
    #: The model's spec; ``options`` is decoded again with the provider's ``Options`` type.
    spec: ModelSpec
    #: ``spec.plugin_options``' type as ``"module:qualname"`` (None: no plugin options).
    plugin_options_type: str | None = None
    #: The device the scheduler placed the model on: "cpu", "cuda:0", ...
    device: str
    #: Calls that may run at once (the model's concurrency slots).
    concurrency: int = 1

    @classmethod
    def of(cls, entry: ModelEntry, device: str, concurrency: int) -> WorkerSpec:
        plugin_options = entry.spec.plugin_options
        return cls(
            model=entry.id,
            provider=qualified_name(entry.provider_cls),
            spec=entry.spec,
            plugin_options_type=None if plugin_options is None else qualified_name(type(plugin_options)),
            device=device,
            concurrency=concurrency,
        )


class WorkerMemory(Struct, frozen=True, kw_only=True):
    """Bytes a worker holds, measured (``host``: its process's resident set; ``devices``: GPU
    memory per CUDA device), and what its provider reports (``reported``)."""

    host: int | None = None
    devices: dict[str, int] = {}
    reported: int = 0

    def on(self, device: str) -> int | None:
        """What it holds on ``device`` ("cpu", or a node's "NODE/cpu", is host memory); None when
        not measured."""
        return self.host if device == "cpu" or device.endswith("/cpu") else self.devices.get(device)


class LoadReport(Struct, frozen=True, kw_only=True):
    """What a load took: seconds, what the provider says it holds, and what was measured on the
    model's device (None when it could not be: a remote provider, an unreadable counter)."""

    seconds: float
    reported: int | None
    measured: int | None = None
    #: ``measured`` is everything the worker holds (a process of its own), not a change in a
    #: process shared with others, which other allocations blur.
    whole: bool = False


class WorkerExit(Struct, frozen=True, kw_only=True):
    """How a worker ended. ``reason``: "stopped" (unloaded), "crashed" (died on its own) or
    "killed" (Loom killed it, e.g. a hung call)."""

    reason: str
    returncode: int | None = None
    #: The signal that ended the process ("SIGKILL", "SIGSEGV"), when one did.
    signal: str | None = None
    #: Bytes given back, when measured (an unloaded process gives back all it held).
    freed: int | None = None
    detail: str = ""


class NodeInfo(Struct, frozen=True, kw_only=True):
    """One machine of a cluster as a cluster executor sees it (what the scheduler places on)."""

    #: The cluster's own id for it (Ray's node id).
    id: str
    #: Loom's name for it (its ``loom-node`` label, else its host name); devices are ``NAME/cpu``,
    #: ``NAME/cuda:0``, ...
    name: str
    address: str = ""
    #: What it offers, as the cluster counts it (Ray: ``CPU``, ``GPU``, ``memory``, custom ones).
    resources: dict[str, float] = {}
    labels: dict[str, str] = {}
    #: Host memory in bytes, measured on the node (None: not measured).
    memory: int | None = None
    #: Each CUDA device's total memory, by index, measured on the node (NVML).
    gpus: dict[int, int] = {}
    #: Why Loom cannot place models there ("" when it can), e.g. Loom is not installed on it.
    error: str = ""


class Worker(Protocol):
    """One loaded model in an executor. Calls are multiplexed: several may be in flight at once."""

    model: str
    device: str

    # Read-only (properties here, so a worker class may set them as class attributes).
    @property
    def executor(self) -> str:
        """The executor's name ("inprocess", "subprocess", ...)."""

    @property
    def pid(self) -> int | None:
        """The worker's OS process id, on its own machine (None in the daemon's process)."""

    #: Measured when the model was loaded.
    loaded: LoadReport
    #: Resolves once with a :class:`WorkerExit` when the worker is gone, whatever the cause.
    exited: asyncio.Future[WorkerExit]

    async def call(self, work: Work, ctx: RunContext) -> Any:
        """Run one call and return its result (a streaming call's chunks as a list). Raises the
        provider's error as a ``loom.sdk.errors`` class (or, for a non-Loom error, an exception
        that keeps its type name), :class:`~loom.sdk.errors.WorkerCrashed` when the worker dies
        meanwhile. ``ctx.cancel()`` stops it at the provider's next check."""

    async def feed(self, work: Work, ctx: RunContext, sink: Callable[[Any], None]) -> None:
        """Run a streaming call, calling ``sink(chunk)`` on the event loop for each chunk as the
        provider produces it; returns when the call has ended (raises its error). ``sink`` must
        not raise. This is what the scheduler uses: no queue and no task between the worker and
        the client's stream."""

    def stream(self, work: Work, ctx: RunContext) -> AsyncIterator[Any]:
        """The same as an async iterator (``chunks_of(self.feed, work, ctx)``); closing it early
        cancels the call and returns once the worker has stopped it."""

    async def memory(self) -> WorkerMemory:
        """Measure what the worker holds now."""

    def kill(self, reason: str) -> bool:
        """End the worker now (a hung call): a process is killed and its calls fail (True); a
        worker in the daemon's process cannot be, and cancels its running calls instead (False)."""

    async def stop(self) -> WorkerExit:
        """Unload the model and end the worker (running calls should be finished first)."""


class Executor(Protocol):
    """Starts workers; one instance per kind per scheduler."""

    name: ClassVar[str]
    #: Whether its workers run on the machines of a cluster (a :class:`ClusterExecutor`).
    cluster: ClassVar[bool]

    async def start(self, entry: ModelEntry, device: str, concurrency: int) -> Worker:
        """Start a worker for ``entry`` on ``device`` and load the model in it. A load that fails
        raises its error (out of memory included) and leaves nothing behind."""

    async def close(self) -> None:
        """Release what the executor holds itself (its workers are stopped by the scheduler)."""


class ClusterExecutor(Executor, Protocol):
    """An executor whose workers run on the machines of a cluster (``cluster = True``). Its
    devices are named ``NODE/DEVICE`` ("gpu-a/cuda:0"), and ``start`` is given one of them."""

    async def open(self, on_nodes: Callable[[list[NodeInfo]], None]) -> list[NodeInfo]:
        """Connect to the cluster and return its usable nodes; from then on call ``on_nodes`` on
        the event loop with the whole list whenever it changes (a node joined, left or died)."""


async def chunks_of(
    feed: Callable[[Work, RunContext, Callable[[Any], None]], Any], work: Work, ctx: RunContext
) -> AsyncIterator[Any]:
    """A worker's ``feed`` as an async iterator of chunks."""
    from .channel import Channel

    channel = Channel()
    end = object()
    task = asyncio.ensure_future(feed(work, ctx, channel.put_nowait))
    task.add_done_callback(lambda _: channel.put_nowait(end))
    try:
        while (chunk := await channel.get()) is not end:
            yield chunk
        task.result()  # raises the call's error
    finally:
        if not task.done():  # closed early: stop the call and wait until it has stopped
            ctx.cancel()
            try:
                await task
            except BaseException:  # its Cancelled, or whatever ended it
                pass


def qualified_name(obj: type) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def import_name(name: str) -> Any:
    """``"package.module:Outer.Inner"`` -> the object."""
    import importlib

    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
