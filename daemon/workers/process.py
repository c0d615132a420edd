"""The subprocess executor: one worker process per loaded model (:mod:`.child` is its other end).

The daemon talks to a worker over a socketpair with the messages of :mod:`.wire`, read by an
asyncio protocol on the event loop: a token costs one small frame each way and no thread hop on
the daemon's side. The process ending is the truth about a worker: when it exits on its own (a
segfault, ``kill -9``, the OOM killer) every call it was running fails with
:class:`~loom.sdk.errors.WorkerCrashed` naming the model and the signal, and ``exited`` resolves
so the scheduler can record the model as unloaded. Unloading ends the process, so everything it
held (heap, CUDA context, llama.cpp buffers) goes back to the OS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from loom.sdk.calls import Call
from loom.sdk.errors import WorkerCrashed
from loom.sdk.protocols import RunContext

from .base import LoadReport, WorkerExit, WorkerMemory, WorkerSpec, chunks_of
from .pending import Pending, PendingCalls
from .wire import (
    Cancel,
    Chunk,
    Failed,
    Framer,
    FrameReader,
    FromWorker,
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
    rebuild_error,
)

if TYPE_CHECKING:
    from ..models import ModelEntry

log = logging.getLogger("loom.workers")

#: How long an unload may take before the worker is killed instead.
STOP_TIMEOUT = 30.0
#: How long a worker that closed its socket may take to exit before it is killed.
EXIT_GRACE = 5.0


class ProcessExecutor:
    """Starts :class:`ProcessWorker` s with this interpreter (``sys.executable``)."""

    name: ClassVar[str] = "subprocess"
    cluster: ClassVar[bool] = False

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self.workers: set[ProcessWorker] = set()

    async def start(self, entry: ModelEntry, device: str, concurrency: int) -> ProcessWorker:
        return await self.start_spec(WorkerSpec.of(entry, device, concurrency))

    async def start_spec(self, spec: WorkerSpec) -> ProcessWorker:
        worker = ProcessWorker(spec)
        self.workers.add(worker)
        worker.exited.add_done_callback(lambda _: self.workers.discard(worker))
        await worker.launch(self.python)
        return worker

    async def close(self) -> None:
        for worker in list(self.workers):
            worker.kill("Loom is shutting down")
        for worker in list(self.workers):
            try:
                await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_GRACE)
            except (TimeoutError, asyncio.CancelledError):
                pass


class ProcessWorker:
    executor: ClassVar[str] = "subprocess"

    def __init__(self, spec: WorkerSpec) -> None:
        loop = asyncio.get_running_loop()
        self.spec = spec
        self.model = spec.model
        self.device = spec.device
        self.pid: int | None = None
        self.loaded = LoadReport(seconds=0.0, reported=None)
        self.exited: asyncio.Future[WorkerExit] = loop.create_future()
        self._loop = loop
        self._proc: asyncio.subprocess.Process | None = None
        self._transport: asyncio.Transport | None = None
        self._framer = Framer()
        self._reader = FrameReader(FromWorker)
        self._calls = PendingCalls(spec.model, "runs in a worker process")
        self._requests: dict[int, asyncio.Future] = {}  # memory queries, shutdown
        self._load: asyncio.Future = loop.create_future()
        self._stopping = False
        self._killed: str | None = None

    # --- starting ---------------------------------------------------------------------------------

    async def launch(self, python: str) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "loom.daemon.workers.child",
                str(child.fileno()),
                str(os.getpid()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.pid = self._proc.pid
        self._transport, _ = await self._loop.create_unix_connection(lambda: _Protocol(self), sock=parent)
        self._watcher = self._loop.create_task(self._watch(), name=f"loom-worker-{self.model}")
        self._send(Load(self.spec))
        try:
            loaded: Loaded = await asyncio.shield(self._load)
        except asyncio.CancelledError:
            self.kill("its load was abandoned")
            await asyncio.shield(self.exited)
            raise
        except Exception:
            # A failed load ends the process by itself (it says why first).
            self._stopping = True
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), EXIT_GRACE)
            except TimeoutError:
                self.kill("it did not exit after its load failed")
                await asyncio.shield(self.exited)
            raise
        self.loaded = loaded.report

    async def _watch(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        self._ended(code)

    def _ended(self, code: int) -> None:
        if self.exited.done():
            return
        if self._transport is not None:
            self._transport.close()
        sig = _signal_name(-code) if code < 0 else None
        what = f"worker process {self.pid} " + (f"was killed by {sig}" if sig else f"exited with status {code}")
        if self._killed is not None:
            reason, detail = "killed", f"{what}: Loom killed it because {self._killed}"
        elif self._stopping:
            reason, detail = "stopped", "" if code == 0 else what
        else:
            reason, detail = "crashed", what
        if detail:
            log.log(logging.INFO if reason == "stopped" else logging.WARNING, "model %s: %s", self.model, detail)
        stage = "while loading" if not self._load.done() else "while serving"
        error = WorkerCrashed(
            f"model '{self.model}' {'crashed' if reason == 'crashed' else 'ended'} {stage}: its {detail or what}"
        )
        if not self._load.done():
            self._load.set_exception(error)
        self._calls.fail_all(error)
        for request in self._requests.values():
            if not request.done():
                request.set_exception(error)
        self.exited.set_result(WorkerExit(reason=reason, returncode=code, signal=sig, detail=detail))

    # --- the wire ---------------------------------------------------------------------------------

    def _send(self, message: Any) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise WorkerCrashed(f"model '{self.model}': its worker process {self.pid} is gone")
        transport.write(self._framer.frame(message))

    def _received(self, data: bytes) -> None:
        try:
            messages = self._reader.feed(data)
        except Exception as e:  # a corrupt frame: nothing after it can be trusted
            self.kill(f"it sent an unreadable message: {e}")
            return
        for message in messages:
            if isinstance(message, (Chunk, Result, Progress, Preview)):
                self._calls.deliver(message)
            elif isinstance(message, Failed):
                if message.id == 0:
                    if not self._load.done():
                        self._load.set_exception(rebuild_error(message.error))
                    continue
                self._calls.deliver(message)
            elif isinstance(message, (MemoryReport, Stopped)):
                request = self._requests.pop(message.id, None)
                if request is not None and not request.done():
                    request.set_result(message)
            elif isinstance(message, Loaded) and not self._load.done():
                self._load.set_result(message)

    def _connection_lost(self) -> None:
        """The socket closed: the process is ending (or ended); make sure it does."""
        if not self.exited.done():
            self._loop.call_later(EXIT_GRACE, self._force)

    def _force(self) -> None:
        if not self.exited.done():
            self.kill("it closed its connection but did not exit")

    def _open(self, work: Any, ctx: RunContext, sink: Callable[[Any], None] | None) -> tuple[int, Pending]:
        if self.exited.done() and isinstance(work, Call):
            raise WorkerCrashed(f"model '{self.model}': {self.exited.result().detail}")
        call_id, pending = self._calls.open(work, ctx, sink)
        try:
            self._send(Run(call_id, work, sink is not None, int(ctx.priority)))
        except BaseException:
            self._calls.close(call_id)
            raise
        loop = self._loop
        pending.remove = ctx.add_cancel_callback(lambda: loop.call_soon_threadsafe(self._cancel, call_id))
        return call_id, pending

    def _cancel(self, call_id: int) -> None:
        if self._calls.get(call_id) is not None and not self.exited.done():
            try:
                self._send(Cancel(call_id))
            except WorkerCrashed:
                pass

    # --- the Worker interface ---------------------------------------------------------------------

    async def call(self, work: Any, ctx: RunContext) -> Any:
        return await self._run(work, ctx, None)

    async def feed(self, work: Any, ctx: RunContext, sink: Callable[[Any], None]) -> None:
        await self._run(work, ctx, sink)

    def stream(self, work: Any, ctx: RunContext) -> AsyncIterator[Any]:
        return chunks_of(self.feed, work, ctx)

    async def _run(self, work: Any, ctx: RunContext, sink: Callable[[Any], None] | None) -> Any:
        call_id, pending = self._open(work, ctx, sink)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._cancel(call_id)  # the scheduler gave up on it (a hung call, shutdown)
            raise
        finally:
            self._calls.close(call_id)

    async def memory(self) -> WorkerMemory:
        report: MemoryReport = await self._request(MemoryQuery)
        return report.memory

    async def _request(self, kind: type) -> Any:
        request_id = next(self._calls.ids)
        future = self._loop.create_future()
        self._requests[request_id] = future
        try:
            self._send(kind(request_id))
            return await future
        finally:
            self._requests.pop(request_id, None)

    def kill(self, reason: str) -> bool:
        if self._proc is None or self.exited.done():
            return True
        if self._killed is None:
            self._killed = reason
        try:
            self._proc.kill()
        except ProcessLookupError:
            pass
        return True

    async def stop(self) -> WorkerExit:
        if self.exited.done():
            return self.exited.result()
        self._stopping = True
        freed = None
        try:
            stopped: Stopped = await asyncio.wait_for(self._request(Shutdown), STOP_TIMEOUT)
            freed = stopped.freed
            await asyncio.wait_for(asyncio.shield(self.exited), EXIT_GRACE)
        except (TimeoutError, WorkerCrashed):
            self.kill("it did not stop when asked")
        except asyncio.CancelledError:
            self.kill("its unload was interrupted")
            raise
        done = await asyncio.shield(self.exited)
        return msgspec.structs.replace(done, freed=freed) if freed is not None else done


class _Protocol(asyncio.Protocol):
    def __init__(self, worker: ProcessWorker) -> None:
        self.worker = worker

    def data_received(self, data: bytes) -> None:
        self.worker._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker._connection_lost()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


__all__ = ["ProcessExecutor", "ProcessWorker"]
