"""What runs on a Ray node: the actor that holds one loaded model, and the probe that measures a
node when it joins. The daemon's side is :mod:`.ray_executor`.

The actor hosts the provider with the code a worker process uses (:class:`~.host.ModelHost`)
and speaks the same messages (:mod:`.wire`), as bytes:

- ``load()`` answers a ``Loaded`` or ``Failed`` frame;
- ``run(Run)`` is a streaming generator (``num_returns="streaming"``): it yields frames —
  ``Chunk`` and ``Progress`` as they come, then ``Result`` or ``Failed`` — joined into one item
  when the model writes faster than the daemon reads, so a slow reader costs fewer Ray objects;
- ``cancel(id)``, ``memory()`` and ``stop()`` are answered at once whatever runs: the actor has
  threads for them beyond the model's slots;
- ``until_stopped()`` returns once the model is unloaded and fails when the actor dies (killed,
  crashed, its node gone): that is how the daemon learns of a death with no call in flight.

Nothing here imports Ray: Ray imports this module by name on the node (Loom is installed there
too), and it stays as light as a worker process until the model loads.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import msgspec
from loom.sdk.protocols import Priority, RunContext
from msgspec import Raw

from .base import WorkerSpec
from .host import ModelHost
from .memory import total_memory
from .nvml import Nvml
from .wire import Chunk, Failed, Framer, Loaded, Preview, Progress, Result, Run, Stopped, error_info

#: Threads beyond the model's slots, for ``cancel``, ``memory``, ``stop`` and ``until_stopped``.
CONTROL_THREADS = 4
#: How long ``stop`` waits for cancelled calls to return before unloading anyway.
STOP_GRACE = 10.0


class ModelActor:
    """One loaded model on a Ray node (a threaded actor: ``max_concurrency`` is the model's
    slots plus :data:`CONTROL_THREADS`)."""

    def __init__(self, spec: bytes) -> None:
        self.spec = msgspec.msgpack.decode(spec, type=WorkerSpec)
        self.host = ModelHost(self.spec)
        self.pool = ThreadPoolExecutor(max(1, self.spec.concurrency), thread_name_prefix="loom-call")
        self.contexts: dict[int, RunContext] = {}
        self.lock = threading.Lock()
        #: Cancels that overtook their call (Ray runs a threaded actor's calls in any order).
        self.early: set[int] = set()
        self.started = 0  # the highest call id seen
        self.stopped = threading.Event()
        self.encoder = msgspec.msgpack.Encoder()

    def load(self) -> bytes:
        try:
            report = self.host.load()
        except BaseException as e:  # the load's error goes back as data
            return Framer().frame(Failed(0, error_info(e)))
        return Framer().frame(Loaded(os.getpid(), report))

    def run(self, request: bytes) -> Iterator[bytes]:
        message = msgspec.msgpack.decode(request, type=Run)
        call_id, encode = message.id, self.encoder.encode
        out: queue.SimpleQueue = queue.SimpleQueue()
        ctx = RunContext(
            on_progress=lambda done, total, text: out.put(Progress(call_id, done, total, text)),
            on_preview=lambda image, index: out.put(Preview(call_id, index, image)),
            device=self.host.device,
            priority=Priority(message.priority),
        )
        with self.lock:
            self.contexts[call_id] = ctx
            self.started = max(self.started, call_id)
            if call_id in self.early:
                self.early.discard(call_id)
                ctx.cancel()

        def work() -> None:
            try:
                value = self.host.run(
                    message.call, ctx, message.stream, lambda chunk: out.put(Chunk(call_id, Raw(encode(chunk))))
                )
                out.put(Result(call_id) if message.stream else Result(call_id, Raw(encode(value))))
            except BaseException as e:  # the provider's error, as data
                out.put(Failed(call_id, error_info(e)))

        self.pool.submit(work)
        framer = Framer()
        try:
            while True:
                item = out.get()
                frames = [framer.frame(item)]
                end = isinstance(item, (Result, Failed))
                while not end:
                    try:
                        item = out.get_nowait()
                    except queue.Empty:
                        break
                    frames.append(framer.frame(item))
                    end = isinstance(item, (Result, Failed))
                yield b"".join(frames)
                if end:
                    return
        finally:
            ctx.cancel()  # a no-op once the call ended; else the daemon stopped reading
            with self.lock:
                self.contexts.pop(call_id, None)

    def cancel(self, call_id: int) -> None:
        with self.lock:
            ctx = self.contexts.get(call_id)
            if ctx is None and call_id > self.started:
                self.early.add(call_id)
        if ctx is not None:
            ctx.cancel()

    def memory(self) -> bytes:
        return msgspec.msgpack.encode(self.host.memory())

    def stop(self) -> bytes:
        """Cancel what runs, unload the model, and say what it held (the daemon then ends the
        actor's process, which gives everything back)."""
        with self.lock:
            running = list(self.contexts.values())
        for ctx in running:
            ctx.cancel()
        deadline = time.monotonic() + STOP_GRACE
        while self.contexts and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pool.shutdown(wait=False, cancel_futures=True)
        freed = self.host.unload()
        self.stopped.set()
        return Framer().frame(Stopped(0, freed))

    def until_stopped(self) -> bytes:
        self.stopped.wait()
        return b""


class NodeProbe(msgspec.Struct, frozen=True):
    """What a node has, measured on it when it joins."""

    hostname: str
    memory: int
    #: Each CUDA device's total memory, by index (NVML; empty without a GPU).
    gpus: dict[int, int]


def probe_node() -> bytes:
    return msgspec.msgpack.encode(NodeProbe(socket.gethostname(), total_memory(), Nvml().totals() or {}))
