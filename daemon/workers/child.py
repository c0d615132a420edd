"""A model worker process: ``python -m loom.daemon.workers.child FD PARENT_PID``.

Started by the subprocess executor for one model load; ``FD`` is its end of a socketpair (the
wire, :mod:`.wire`). It reads ``Load``, imports the provider class, rebuilds the model's spec
(options decoded with the provider's own ``Options`` type) and loads it, then serves calls on a
pool of ``concurrency`` threads while this thread keeps reading (cancellations and memory queries
are answered at once, whatever runs). ``Shutdown`` unloads and exits; so does the daemon going
away (end of stream, or the parent-death signal when the daemon is killed).

Imports stay light until the load: loom.sdk, msgspec and this package, then the provider.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from loom.sdk.errors import Cancelled
from loom.sdk.protocols import Provider, RunContext

from .base import LoadReport, WorkerMemory, WorkerSpec, import_name
from .memory import rss, trim
from .nvml import GpuMeter, Nvml
from .wire import (
    Cancel,
    Chunk,
    Failed,
    Framer,
    Load,
    Loaded,
    MemoryQuery,
    MemoryReport,
    Progress,
    Result,
    Run,
    Shutdown,
    Stopped,
    ToWorker,
    error_info,
    read_message,
)

#: How long Shutdown waits for cancelled calls to return before unloading anyway.
SHUTDOWN_GRACE = 10.0


class WorkerServer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = Framer()
        self.send_lock = threading.Lock()
        self.decoder = msgspec.msgpack.Decoder(ToWorker)
        self.contexts: dict[int, RunContext] = {}
        self.provider: Provider | None = None
        self.device = "cpu"
        self.pool: ThreadPoolExecutor | None = None
        self.gpu: GpuMeter | None = None

    def send(self, message: Any) -> None:
        with self.send_lock:
            self.sock.sendall(self.framer.frame(message))

    # --- the loop -------------------------------------------------------------------------------

    def serve(self) -> int:
        first = read_message(self.sock, self.decoder)
        if not isinstance(first, Load):
            return 2
        if not self.load(first.spec):
            return 1
        assert self.pool is not None
        while True:
            message = read_message(self.sock, self.decoder)
            if message is None:
                return 0  # the daemon is gone: nothing to answer to
            if isinstance(message, Run):
                ctx = self.contexts[message.id] = RunContext(
                    on_progress=lambda done, total, text, i=message.id: self.send(Progress(i, done, total, text)),
                    device=self.device,
                )
                self.pool.submit(self.run, message, ctx)
            elif isinstance(message, Cancel):
                ctx = self.contexts.get(message.id)
                if ctx is not None:
                    ctx.cancel()
            elif isinstance(message, MemoryQuery):
                self.send(MemoryReport(message.id, self.memory()))
            elif isinstance(message, Shutdown):
                self.shutdown(message.id)
                return 0

    # --- load, run, stop ------------------------------------------------------------------------

    def load(self, spec: WorkerSpec) -> bool:
        t0 = time.monotonic()
        self.device = spec.device
        if spec.device.startswith("cuda"):
            self.gpu = GpuMeter(Nvml(), int(spec.device.partition(":")[2] or 0), os.getpid())
            self.gpu.start()
        try:
            cls = import_name(spec.provider)
            model = spec.spec
            options = model.options
            if options is not None:
                options = msgspec.convert(options, cls.Options, strict=False)
            plugin_options = model.plugin_options
            if plugin_options is not None and spec.plugin_options_type is not None:
                plugin_options = msgspec.convert(plugin_options, import_name(spec.plugin_options_type), strict=False)
            model = msgspec.structs.replace(model, options=options, plugin_options=plugin_options)
            provider = cls(model)
            provider.load(spec.device)
        except BaseException as e:
            self.send(Failed(0, error_info(e)))
            return False
        self.provider = provider
        self.pool = ThreadPoolExecutor(max(1, spec.concurrency), thread_name_prefix=f"loom-{spec.model}")
        memory = self.memory()
        report = LoadReport(
            seconds=time.monotonic() - t0, reported=memory.reported, measured=memory.on(self.device), whole=True
        )
        self.send(Loaded(os.getpid(), report))
        return True

    def run(self, message: Run, ctx: RunContext) -> None:
        produced: Any = None
        try:
            produced = message.call.apply(self.provider, ctx)
            if inspect.isasyncgen(produced) or inspect.isawaitable(produced):
                produced = asyncio.run(_drain_async(produced, message, ctx, self))
                if message.stream:
                    self.send(Result(message.id))
                else:
                    self.send(Result(message.id, self.framer.value(produced)))
                return
            if message.stream:
                for chunk in produced:
                    if ctx.cancelled:
                        raise Cancelled("cancelled")
                    self.send(Chunk(message.id, self.framer.value(chunk)))
                self.send(Result(message.id))
            else:
                if inspect.isgenerator(produced):
                    produced = list(produced)
                self.send(Result(message.id, self.framer.value(produced)))
        except BaseException as e:  # the provider's error, as data; this thread lives on
            try:
                self.send(Failed(message.id, error_info(e)))
            except OSError:
                pass
        finally:
            close = getattr(produced, "close", None)
            if close is not None and inspect.isgenerator(produced):
                close()
            self.contexts.pop(message.id, None)

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

    def shutdown(self, request: int) -> None:
        for ctx in list(self.contexts.values()):
            ctx.cancel()
        if self.pool is not None:
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while self.contexts and time.monotonic() < deadline:
                time.sleep(0.01)
            self.pool.shutdown(wait=False, cancel_futures=True)
        freed = self.memory().on(self.device)
        if self.provider is not None:
            try:
                self.provider.unload()
            except Exception as e:
                print(f"loom worker: unload raised {type(e).__name__}: {e}", file=sys.stderr)
        trim()
        self.send(Stopped(request, freed))


async def _drain_async(produced: Any, message: Run, ctx: RunContext, server: WorkerServer) -> Any:
    """A local provider with ``async`` methods: run it on a loop of this thread."""
    if inspect.isawaitable(produced) and not inspect.isasyncgen(produced):
        produced = await produced
    if not inspect.isasyncgen(produced):
        return produced
    out = []
    async for chunk in produced:
        if ctx.cancelled:
            raise Cancelled("cancelled")
        if message.stream:
            server.send(Chunk(message.id, server.framer.value(chunk)))
        else:
            out.append(chunk)
    return out


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the daemon dies, even when it is stuck in native code."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(0)


def main(argv: list[str]) -> None:
    fd, parent = int(argv[1]), int(argv[2])
    _die_with_parent(parent)
    # A Ctrl-C at the terminal reaches the whole process group: the daemon stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    code = WorkerServer(sock).serve()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: native runtimes' exit handlers can hang or crash, and the OS
    # takes back everything the process held anyway.
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv)
