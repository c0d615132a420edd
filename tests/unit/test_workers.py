"""Model workers: the wire (frames, calls, values and errors as data), and real worker processes
driven through the Worker interface: calls, streams, progress, cancellation, several calls at
once, load failures, crashes (SIGKILL, SIGSEGV) and kills. Providers come from
``tests/unit/worker_providers.py``, imported by the worker process by name."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

import msgspec
import pytest
from loom.daemon.scheduler.oom import as_loom_error, is_oom
from loom.daemon.workers import WorkerSpec, wire
from loom.daemon.workers.base import qualified_name
from loom.daemon.workers.process import ProcessExecutor
from loom.sdk import calls
from loom.sdk.errors import Cancelled, InvalidRequest, ProviderError, QueueFull, WorkerCrashed
from loom.sdk.protocols import ImageJob, ModelSpec, RunContext, TextChunk
from loom.sdk.types import ChatCompletionRequest, CompletionRequest
from worker_providers import Probe, ProbeOptions, ProbePluginOptions

HERE = Path(__file__).resolve().parent


def chat(text: str = "hi", max_tokens: int = 5) -> calls.Chat:
    request = msgspec.convert(
        {"model": "p", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens},
        ChatCompletionRequest,
    )
    return calls.Chat(request=request)


# --- the wire --------------------------------------------------------------------------------------


def test_frames_survive_any_split():
    request = chat().request
    messages = [
        wire.Run(1, calls.Chat(request=request), stream=True),
        wire.Run(2, calls.Embed(inputs=["a", "b"])),
        wire.Run(3, calls.GenerateImages(job=ImageJob(prompt="x", width=8, height=8, n=2))),
        wire.Run(4, calls.Describe(image=b"\x89PNG\x00", prompt="what")),
        wire.Run(5, calls.Score(image=b"\x00" * 70000, text="t")),  # bigger than any one read
        wire.Run(6, calls.Translate(texts=["x"], source="en", target="fr")),
        wire.Run(
            7, calls.Complete(prompt="p", request=msgspec.convert({"model": "p", "prompt": "p"}, CompletionRequest))
        ),
        wire.Cancel(1),
        wire.MemoryQuery(8),
        wire.Shutdown(9),
    ]
    framer = wire.Framer()
    data = b"".join(framer.frame(m) for m in messages)
    rng = random.Random(7)
    for _ in range(20):
        reader = wire.FrameReader(wire.ToWorker)
        got, i = [], 0
        while i < len(data):
            step = rng.randint(1, 9000)
            got += reader.feed(data[i : i + step])
            i += step
        assert got == messages


def test_values_decode_as_the_calls_return_type():
    framer = wire.Framer()
    chunk = TextChunk(text="hé", finish_reason="stop", completion_tokens=3)
    out = wire.FrameReader(wire.FromWorker).feed(
        framer.frame(wire.Chunk(1, framer.value(chunk))) + framer.frame(wire.Result(2, framer.value([b"\x89PNG"])))
    )
    assert wire.decode_value(out[0].value, calls.Chat.returns) == chunk
    assert wire.decode_value(out[1].value, calls.GenerateImages.returns) == [b"\x89PNG"]


def test_loom_errors_cross_as_their_own_class():
    class PluginSpecific(ProviderError):
        code = "upstream_said_no"

    for error in (
        InvalidRequest("bad input", param="input", code="bad_code"),
        QueueFull("busy", retry_after=7.5),
        Cancelled("cancelled"),
        PluginSpecific("no", param="model"),
    ):
        encoded = msgspec.msgpack.encode(wire.error_info(error))
        back = wire.rebuild_error(msgspec.msgpack.decode(encoded, type=wire.ErrorInfo))
        expected = ProviderError if isinstance(error, PluginSpecific) else type(error)
        assert type(back) is expected
        assert (back.message, back.param, back.code) == (error.message, error.param, error.code)
    assert wire.rebuild_error(wire.error_info(QueueFull("busy", retry_after=7.5))).retry_after == 7.5


def test_other_errors_keep_their_names():
    class OutOfMemoryError(RuntimeError):
        pass

    value = wire.rebuild_error(wire.error_info(ValueError("broken")))
    assert isinstance(value, wire.RemoteError) and str(value) == "broken" and "ValueError" in value.remote_traceback
    assert not is_oom(value)
    assert as_loom_error(value, "m", "cpu", "run").message == "model 'm' failed at run: ValueError: broken"
    assert is_oom(wire.rebuild_error(wire.error_info(OutOfMemoryError("CUDA error"))))  # by class name
    assert is_oom(wire.rebuild_error(wire.error_info(MemoryError())))
    # A RemoteError passed on again keeps the original names.
    assert wire.error_info(value).names[0] == "ValueError"


# --- worker processes ------------------------------------------------------------------------------


@pytest.fixture
def worker_env(monkeypatch):
    """Worker processes import ``worker_providers`` by name: put this folder on their path."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (path, str(HERE)) if p))


def spec(concurrency: int = 1, **options) -> WorkerSpec:
    model = ModelSpec(
        id="probe",
        provider="probe",
        options=ProbeOptions(**options),
        plugin_options=ProbePluginOptions(greeting="bonjour"),
        capabilities=Probe.capabilities,
    )
    return WorkerSpec(
        model="probe",
        provider=qualified_name(Probe),
        spec=model,
        plugin_options_type=qualified_name(ProbePluginOptions),
        device="cpu",
        concurrency=concurrency,
    )


async def start(**kw):
    return await ProcessExecutor().start_spec(spec(**kw))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


async def test_a_worker_process_loads_serves_and_stops(worker_env):
    w = await start(mb=12)
    try:
        assert w.pid != os.getpid() and alive(w.pid)
        assert w.loaded.reported == 12 * 2**20 and w.loaded.whole and w.loaded.measured > 10 * 2**20
        chunks = [c async for c in w.stream(chat(max_tokens=3), RunContext())]
        assert [c.text for c in chunks] == ["0 ", "1 ", "2 ", ""] and chunks[-1].completion_tokens == 3
        assert all(type(c) is TextChunk for c in chunks)
        assert (await w.call(calls.Embed(inputs=["ab", "c"]), RunContext())).vectors == [[2.0], [1.0]]
        # a streaming call run as a call: its chunks as a list
        assert len(await w.call(chat(max_tokens=2), RunContext())) == 3
        # plugin options were rebuilt with their own type
        assert (await w.call(calls.Embed(inputs=["plugin"]), RunContext())).vectors == [[7.0]]
        progress = []
        ctx = RunContext(on_progress=lambda done, total, message: progress.append((done, total, message)))
        images = await w.call(calls.GenerateImages(job=ImageJob(prompt="x", width=8, height=8, n=2, steps=4)), ctx)
        assert images == [b"\x89PNG\x00", b"\x89PNG\x01"]
        assert progress == [(i, 4, "denoising") for i in range(1, 5)]
        # Previews come back as they are made, over the worker's own wire.
        previews = []
        ctx = RunContext(on_preview=lambda image, index: previews.append((image, index)))
        job = ImageJob(prompt="x", width=8, height=8, steps=4, partial_images=3)
        assert len(await w.call(calls.GenerateImages(job=job), ctx)) == 1
        assert previews == [(b"preview 1/4", 0), (b"preview 2/4", 1), (b"preview 3/4", 2)]
        memory = await w.memory()
        assert memory.reported == 12 * 2**20 and memory.host > 10 * 2**20 and memory.on("cpu") == memory.host
    finally:
        done = await w.stop()
    assert done.reason == "stopped" and done.returncode == 0 and done.freed > 10 * 2**20
    assert not alive(w.pid)


async def test_errors_come_back_as_loom_errors(worker_env):
    w = await start()
    try:
        with pytest.raises(InvalidRequest) as info:
            await w.call(calls.Embed(inputs=["raise:InvalidRequest"]), RunContext())
        assert (info.value.param, info.value.code) == ("input", "bad_code")
        with pytest.raises(QueueFull) as full:
            await w.call(calls.Embed(inputs=["raise:QueueFull"]), RunContext())
        assert full.value.retry_after == 7.0
        with pytest.raises(wire.RemoteError) as oom:
            await w.call(calls.Embed(inputs=["raise:OutOfMemoryError"]), RunContext())
        assert is_oom(oom.value)
        with pytest.raises(ProviderError, match="as data"):
            await w.call(lambda provider, ctx: 1, RunContext())
        assert await w.call(calls.Translate(texts=["x"], source="en", target="fr"), RunContext()) == ["fr:x"]
    finally:
        await w.stop()


async def test_cancellation_stops_the_call_at_its_next_token(worker_env):
    w = await start(token_seconds=0.02)
    try:
        ctx = RunContext()
        stream = w.stream(chat(max_tokens=10_000), ctx)
        assert (await stream.__anext__()).text == "0 "
        t0 = time.monotonic()
        ctx.cancel()
        with pytest.raises(Cancelled):
            async for _ in stream:
                pass
        assert time.monotonic() - t0 < 1.0
        # closing a stream early cancels it too, and waits until the worker stopped it
        stream = w.stream(chat(max_tokens=10_000), RunContext())
        await stream.__anext__()
        await stream.aclose()
        assert not w._calls.calls
        assert await w.call(calls.Translate(texts=["a"], source="en", target="de"), RunContext()) == ["de:a"]
    finally:
        await w.stop()


async def test_calls_are_multiplexed_on_one_worker(worker_env):
    w = await start(concurrency=2, token_seconds=0.02)
    try:
        order = []

        async def consume(name):
            async for _chunk in w.stream(chat(max_tokens=5), RunContext()):
                order.append(name)

        await asyncio.gather(consume("a"), consume("b"))
        assert order.count("a") == order.count("b") == 6
        assert order != sorted(order)  # interleaved: both ran at once
    finally:
        await w.stop()


async def test_a_failed_load_leaves_nothing_behind(worker_env):
    executor = ProcessExecutor()
    with pytest.raises(ProviderError, match="no weights here") as info:
        await executor.start_spec(spec(fail_load="no weights here"))
    assert info.value.param == "model"
    with pytest.raises(wire.RemoteError) as oom:
        await executor.start_spec(spec(fail_load="oom"))
    assert is_oom(oom.value)
    await asyncio.sleep(0)
    assert not executor.workers


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSEGV"])
async def test_a_crash_fails_the_running_calls_naming_the_model_and_signal(worker_env, how):
    w = await start(concurrency=2, token_seconds=0.02)
    stream = w.stream(chat(max_tokens=10_000), RunContext())
    await stream.__anext__()
    if how == "SIGKILL":
        os.kill(w.pid, signal.SIGKILL)
    else:
        asyncio.ensure_future(w.call(chat("crash"), RunContext()))  # the provider segfaults
    with pytest.raises(WorkerCrashed) as info:
        async for _ in stream:
            pass
    assert "model 'probe' crashed" in info.value.message and how in info.value.message
    exited = await asyncio.wait_for(w.exited, 5)
    assert exited.reason == "crashed" and exited.signal == how
    with pytest.raises(WorkerCrashed):
        await w.call(calls.Embed(inputs=["a"]), RunContext())
    assert (await w.stop()).reason == "crashed"


async def test_kill_ends_a_hung_call(worker_env):
    w = await start()
    call = asyncio.ensure_future(w.call(calls.Embed(inputs=["hang"]), RunContext()))
    await asyncio.sleep(0.2)
    w.kill("a call produced nothing for 1s")
    with pytest.raises(WorkerCrashed, match="Loom killed it because a call produced nothing"):
        await call
    exited = await w.exited
    assert exited.reason == "killed" and exited.signal == "SIGKILL"
    assert not alive(w.pid)


async def test_the_worker_ends_when_the_daemon_goes_away(worker_env):
    """End of stream (the daemon's socket closed) ends the worker, whatever it was doing."""
    w = await start()
    w._transport.close()
    exited = await asyncio.wait_for(w.exited, 10)
    assert exited.returncode == 0 and not alive(w.pid)


# --- the worker's own side, in a thread ------------------------------------------------------------


def test_the_worker_side_over_a_socketpair(worker_env):
    """``WorkerServer`` without a process: a Load, a Run with progress, a memory query, a
    Shutdown, each answered on the wire."""
    from loom.daemon.workers.child import WorkerServer

    ours, theirs = socket.socketpair()
    server = WorkerServer(theirs)
    code = []
    thread = threading.Thread(target=lambda: code.append(server.serve()))
    thread.start()
    framer, reader = wire.Framer(), wire.FrameReader(wire.FromWorker)

    def ask(message, until):
        ours.sendall(framer.frame(message))
        got = []
        while not any(isinstance(m, until) for m in got):
            got += reader.feed(ours.recv(65536))
        return got

    (loaded,) = ask(wire.Load(spec()), wire.Loaded)
    assert loaded.pid == os.getpid() and loaded.report.reported == 10 * 2**20
    job = ImageJob(prompt="x", width=8, height=8, n=1, steps=2)
    answers = ask(wire.Run(5, calls.GenerateImages(job=job)), wire.Result)
    assert [type(m).__name__ for m in answers] == ["Progress", "Progress", "Result"]
    assert wire.decode_value(answers[-1].value, list[bytes]) == [b"\x89PNG\x00"]
    (report,) = ask(wire.MemoryQuery(6), wire.MemoryReport)
    assert report.id == 6 and report.memory.reported == 10 * 2**20
    (stopped,) = ask(wire.Shutdown(7), wire.Stopped)
    assert stopped.id == 7
    thread.join(5)
    assert code == [0]
    ours.close()


PARENT = """
import asyncio, sys
sys.path.insert(0, {here!r})
from test_workers import spec

from loom.daemon.workers.process import ProcessExecutor

async def main():
    w = await ProcessExecutor().start_spec(spec())
    print(w.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_worker_dies_with_a_killed_daemon(worker_env):
    """``kill -9`` of the daemon leaves no worker behind (the parent-death signal)."""
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(here=str(HERE))], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        parent.kill()
