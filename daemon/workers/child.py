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

import functools
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from loom.sdk.protocols import Priority, RunContext

from .base import WorkerSpec
from .host import ModelHost
from .wire import (
    Cancel,
    Chunk,
    Failed,
    Framer,
    Load,
    Loaded,
    MemoryQuery,
    MemoryReport,
    Preview,
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
        self.host: ModelHost | None = None
        self.pool: ThreadPoolExecutor | None = None

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
        assert self.pool is not None and self.host is not None
        while True:
            message = read_message(self.sock, self.decoder)
            if message is None:
                return 0  # the daemon is gone: nothing to answer to
            if isinstance(message, Run):
                ctx = self.contexts[message.id] = RunContext(
                    on_progress=functools.partial(self.progress, message.id),
                    on_preview=functools.partial(self.preview, message.id),
                    device=self.host.device,
                    priority=Priority(message.priority),
                )
                self.pool.submit(self.run, message, ctx)
            elif isinstance(message, Cancel):
                running = self.contexts.get(message.id)
                if running is not None:
                    running.cancel()
            elif isinstance(message, MemoryQuery):
                self.send(MemoryReport(message.id, self.host.memory()))
            elif isinstance(message, Shutdown):
                self.shutdown(message.id)
                return 0

    def progress(self, call_id: int, done: int, total: int, text: str) -> None:
        self.send(Progress(call_id, done, total, text))

    def preview(self, call_id: int, image: bytes, index: int) -> None:
        self.send(Preview(call_id, index, image))

    # --- load, run, stop ------------------------------------------------------------------------

    def load(self, spec: WorkerSpec) -> bool:
        host = ModelHost(spec)
        try:
            report = host.load()
        except BaseException as e:
            self.send(Failed(0, error_info(e)))
            return False
        self.host = host
        self.pool = ThreadPoolExecutor(max(1, spec.concurrency), thread_name_prefix=f"loom-{spec.model}")
        self.send(Loaded(os.getpid(), report))
        return True

    def run(self, message: Run, ctx: RunContext) -> None:
        assert self.host is not None
        call_id, value = message.id, self.framer.value

        def emit(chunk: Any) -> None:
            self.send(Chunk(call_id, value(chunk)))

        try:
            produced = self.host.run(message.call, ctx, message.stream, emit)
            self.send(Result(call_id) if message.stream else Result(call_id, value(produced)))
        except BaseException as e:  # the provider's error, as data; this thread lives on
            try:
                self.send(Failed(call_id, error_info(e)))
            except OSError:
                pass
        finally:
            self.contexts.pop(call_id, None)

    def shutdown(self, request: int) -> None:
        for ctx in list(self.contexts.values()):
            ctx.cancel()
        if self.pool is not None:
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while self.contexts and time.monotonic() < deadline:
                time.sleep(0.01)
            self.pool.shutdown(wait=False, cancel_futures=True)
        freed = self.host.unload() if self.host is not None else None
        self.send(Stopped(request, freed))


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
