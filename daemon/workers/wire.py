"""The wire between the daemon and a worker process: msgpack messages, length-prefixed.

Each frame is a 4-byte big-endian length and one msgspec-encoded message. The daemon sends
:data:`ToWorker` messages and the worker answers with :data:`FromWorker` ones; every request but
``Load`` carries an ``id`` and its answers carry the same id, so several calls share one socket.

A call goes out as ``Run`` (its :class:`~loom.sdk.calls.Call` struct); a stream answers with a
``Chunk`` per chunk as it is produced, then ``Result``; a call answers with one ``Result``; either
may send ``Progress`` (and an image call ``Preview``) meanwhile, or end with ``Failed`` (the error as data, rebuilt as the same
``loom.sdk.errors`` class on the daemon's side). ``Cancel`` makes the call's ``RunContext``
cancelled, so the provider stops at its next step or token. Values travel as ``Raw`` msgpack and
are decoded with the call's ``returns`` type by the side that knows it.

Not stdout: native libraries print there. The socket is a socketpair end handed to the child.
"""

from __future__ import annotations

import socket
import struct
import traceback
from typing import Any

import msgspec
from loom.sdk import errors as loom_errors
from loom.sdk.calls import ProviderCall
from msgspec import Raw, Struct

from .base import LoadReport, WorkerMemory, WorkerSpec

#: Frames larger than this are refused (a corrupt length would otherwise allocate gigabytes).
MAX_FRAME = 1 << 31
_LENGTH = struct.Struct(">I")


# --- daemon -> worker ---------------------------------------------------------------------------


class Load(Struct, tag="load", frozen=True):
    spec: WorkerSpec


class Run(Struct, tag="run", frozen=True):
    id: int
    call: ProviderCall
    #: Send chunks as they come (a stream); else drain a generator and send the list.
    stream: bool = False
    #: The call's ``RunContext.priority`` (``loom.sdk.Priority``), for a provider that pauses work.
    priority: int = 0


class Cancel(Struct, tag="cancel", frozen=True):
    id: int


class MemoryQuery(Struct, tag="memory", frozen=True):
    id: int


class Shutdown(Struct, tag="shutdown", frozen=True):
    id: int


ToWorker = Load | Run | Cancel | MemoryQuery | Shutdown


# --- worker -> daemon ---------------------------------------------------------------------------


class ErrorInfo(Struct, frozen=True, kw_only=True):
    """An exception as data. ``kind`` names a ``loom.sdk.errors`` class ("" for any other error);
    ``names`` are the exception's own class names, most specific first (how an out-of-memory
    error of any runtime is recognised, see ``scheduler.oom``)."""

    kind: str
    names: list[str]
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None
    traceback: str = ""


class Loaded(Struct, tag="loaded", frozen=True):
    pid: int
    report: LoadReport


class Chunk(Struct, tag="chunk", frozen=True):
    id: int
    value: Raw


class Progress(Struct, tag="progress", frozen=True):
    id: int
    done: int
    total: int
    message: str = ""


class Preview(Struct, tag="preview", frozen=True):
    """A picture of an image call's work so far (``RunContext.preview``)."""

    id: int
    index: int
    image: bytes


class Result(Struct, tag="result", frozen=True):
    id: int
    value: Raw = Raw(b"\xc0")  # nil


class Failed(Struct, tag="failed", frozen=True):
    id: int  # 0: the load
    error: ErrorInfo


class MemoryReport(Struct, tag="memory_report", frozen=True):
    id: int
    memory: WorkerMemory


class Stopped(Struct, tag="stopped", frozen=True):
    id: int
    freed: int | None = None


FromWorker = Loaded | Chunk | Progress | Preview | Result | Failed | MemoryReport | Stopped


# --- framing ------------------------------------------------------------------------------------


class Framer:
    """Encodes messages into frames, reusing one buffer (a token's frame costs one allocation)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._buffer = bytearray(256)

    def frame(self, message: Any) -> bytes:
        buf = self._buffer
        self._encoder.encode_into(message, buf, 4)
        _LENGTH.pack_into(buf, 0, len(buf) - 4)
        return bytes(buf)

    def value(self, value: Any) -> Raw:
        return Raw(self._encoder.encode(value))


class FrameReader:
    """Collects bytes as they arrive and yields the complete messages in them."""

    def __init__(self, type: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(type)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buffer
        buf += data
        out = []
        start = 0
        while len(buf) - start >= 4:
            (size,) = _LENGTH.unpack_from(buf, start)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes")
            end = start + 4 + size
            if len(buf) < end:
                break
            out.append(self._decoder.decode(buf[start + 4 : end]))  # a copy: Raw values point into it
            start = end
        if start:
            del buf[:start]
        return out


def read_message(sock: socket.socket, decoder: msgspec.msgpack.Decoder) -> Any | None:
    """Read one whole frame from a blocking socket; None at end of stream."""
    head = _recv_exactly(sock, 4)
    if head is None:
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    body = _recv_exactly(sock, size)
    if body is None:
        return None
    return decoder.decode(body)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        got = sock.recv(n - len(chunks))
        if not got:
            return None
        chunks += got
    return bytes(chunks)


def decode_value(raw: Raw, type: Any) -> Any:
    return msgspec.msgpack.decode(raw, type=type)


# --- errors -------------------------------------------------------------------------------------


class RemoteError(Exception):
    """A non-Loom exception raised in a worker: its message, with its class names kept for the
    daemon's checks (``is_oom``) and messages (``as_loom_error``)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.type_name = info.names[0] if info.names else "Exception"
        self.names = info.names
        self.remote_traceback = info.traceback


def error_info(error: BaseException) -> ErrorInfo:
    names = [cls.__name__ for cls in type(error).__mro__ if cls not in (BaseException, object)]
    if isinstance(error, loom_errors.LoomError):
        # The nearest class the daemon knows: a plugin's own subclass travels as its base.
        kind = next(cls.__name__ for cls in type(error).__mro__ if getattr(loom_errors, cls.__name__, None) is cls)
        return ErrorInfo(
            kind=kind,
            names=names,
            message=error.message,
            param=error.param,
            code=error.code,
            retry_after=getattr(error, "retry_after", None),
        )
    if isinstance(error, RemoteError):
        names = error.names
    text = "".join(traceback.format_exception(error))
    return ErrorInfo(kind="", names=names, message=str(error), traceback=text[-8000:])


def rebuild_error(info: ErrorInfo) -> Exception:
    """The exception ``info`` describes: the same ``loom.sdk.errors`` class, or a RemoteError."""
    cls = getattr(loom_errors, info.kind, None) if info.kind else None
    if not (isinstance(cls, type) and issubclass(cls, loom_errors.LoomError)):
        return RemoteError(info)
    kwargs: dict[str, Any] = {"param": info.param}
    if issubclass(cls, loom_errors.QueueFull) and info.retry_after is not None:
        kwargs["retry_after"] = info.retry_after
    error = cls(info.message, **kwargs)
    if info.code is not None:
        error.code = info.code
    return error
