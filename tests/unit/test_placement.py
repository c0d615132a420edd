"""Placement on a cluster, without Ray: a cluster executor stand-in (its workers in process)
reports nodes; the scheduler makes their devices, places each model by its resources, labels,
node and device kind, then free memory and affinity, and takes a node's models off the ledger
when it leaves, moving its queued work to another node. The real thing on a Ray cluster is
``tests/integration/test_ray.py``."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from loom.daemon.config import Config, DaemonConfig, DeviceBudget, Limits, SchedulerConfig
from loom.daemon.models import ModelEntry, ModelRegistry
from loom.daemon.scheduler import Scheduler
from loom.daemon.workers import NodeInfo
from loom.daemon.workers.inprocess import InProcessExecutor, InProcessWorker
from loom.sdk.config import ModelConfig, RayResources
from loom.sdk.errors import OutOfMemory, Unavailable
from loom.sdk.protocols import ModelSpec, Provider, RunContext

GB = 10**9
ALPHA = NodeInfo(
    id="a1",
    name="alpha",
    address="10.0.0.1",
    resources={"CPU": 4.0, "small": 1.0},
    labels={"loom-node": "alpha", "zone": "a"},
    memory=8 * GB,
)
BETA = NodeInfo(
    id="b1",
    name="beta",
    address="10.0.0.2",
    resources={"CPU": 8.0, "GPU": 1.0, "big": 2.0},
    labels={"loom-node": "beta"},
    memory=8 * GB,
    gpus={0: 16 * GB},
)


class Plain(Provider):
    name = "plain"
    capabilities = frozenset()


class FakeCluster:
    """A cluster executor whose "nodes" are this process: it records where it started workers."""

    name: ClassVar[str] = "ray"
    cluster: ClassVar[bool] = True

    def __init__(self, nodes: list[NodeInfo]) -> None:
        self.nodes = nodes
        self.on_nodes = None
        self.started: list[str] = []

    async def open(self, on_nodes):
        self.on_nodes = on_nodes
        return self.nodes

    async def start(self, entry: ModelEntry, device: str, concurrency: int) -> InProcessWorker:
        worker = InProcessWorker(entry.id, entry.instance(), device, concurrency)
        await worker.load()
        self.started.append(device)
        return worker

    async def close(self) -> None:
        return None


def model(mid: str, size: float, device: str = "cpu", **ray) -> ModelEntry:
    return ModelEntry(
        config=ModelConfig(id=mid, provider="plain", executor="ray", ray=RayResources(**ray)),
        provider_cls=Plain,
        plugin="test",
        source="config",
        spec=ModelSpec(id=mid, provider="plain", device=device),
        capabilities=frozenset(),
        keep_alive=None,
        vram_override=int(size * GB),
        executor="ray",
    )


def make(*entries: ModelEntry, nodes=(ALPHA, BETA)) -> tuple[Scheduler, FakeCluster]:
    config = Config(
        daemon=DaemonConfig(limits=Limits(queue_timeout=30.0)),
        scheduler=SchedulerConfig(
            executor="ray",
            devices={
                "alpha/cpu": DeviceBudget(budget="2GB", parallel=True),
                "beta/cpu": DeviceBudget(budget="1GB", parallel=True),
                "cuda:0": DeviceBudget(budget="50%"),
            },
        ),
    )
    registry = ModelRegistry()
    for e in entries:
        registry.add(e)
    cluster = FakeCluster(list(nodes))
    return Scheduler(config, registry, executors={"inprocess": InProcessExecutor(), "ray": cluster}), cluster


def where(provider: Provider, ctx: RunContext) -> str:
    return ctx.device


async def test_nodes_become_devices_with_their_budgets():
    s, _ = make()
    await s.start()
    try:
        devices = {d["name"]: d for d in s.snapshot()["devices"]}
        assert devices["alpha/cpu"]["budget"] == 2 * GB and devices["alpha/cpu"]["node"] == "alpha"
        assert devices["beta/cpu"]["budget"] == 1 * GB
        assert devices["beta/cuda:0"]["budget"] == 8 * GB and devices["beta/cuda:0"]["kind"] == "cuda"
        assert "node" not in devices["cpu"]  # the daemon's own machine
        nodes = {n["name"]: n for n in s.snapshot()["nodes"]}
        assert nodes["beta"]["devices"] == ["beta/cpu", "beta/cuda:0"] and nodes["beta"]["gpus"] == 1
        metrics = s.metrics.render().decode()
        assert 'loom_cluster_node{address="10.0.0.2",node="beta",usable="1"} 1.0' in metrics
        assert 'loom_device_memory_bytes{device="beta/cuda:0",kind="budget"}' in metrics
    finally:
        await s.stop()


async def test_a_model_goes_where_its_kind_resources_labels_and_node_allow():
    entries = [
        model("big", 0.1, resources={"big": 1}),
        model("zoned", 0.1, labels={"zone": "a"}),
        model("pinned", 0.1, node="beta"),
        model("auto", 1, device="auto"),  # a GPU when there is one
        model("gpu-share", 1, device="cuda", num_gpus=0.5),
        model("cpu", 0.5),  # the most free CPU: alpha's 2 GB over beta's 1 GB
    ]
    s, cluster = make(*entries)
    await s.start()
    try:
        got = {e.id: await s.run(e, where) for e in entries}
        assert got == {
            "big": "beta/cpu",
            "zoned": "alpha/cpu",
            "pinned": "beta/cpu",
            "auto": "beta/cuda:0",
            "gpu-share": "beta/cuda:0",
            "cpu": "alpha/cpu",
        }
        assert sorted(cluster.started) == sorted(got.values())
        assert s.model_state(entries[0])["node"] == "beta"
    finally:
        await s.stop()


async def test_free_memory_first_then_the_node_it_ran_on():
    first, second, third = model("first", 1.5), model("second", 0.4), model("third", 0.3)
    s, _ = make(first, second, third)
    await s.start()
    try:
        assert await s.run(first, where) == "alpha/cpu"  # 2 GB free over 1 GB
        assert await s.run(second, where) == "beta/cpu"  # alpha has 0.5 GB left, beta 1 GB
        assert await s.unload(second)
        await s.unload(first)
        assert await s.run(third, where) == "alpha/cpu"
        # alpha has more free now, but "second" goes back to the node it ran on: it fits there too
        assert await s.run(second, where) == "beta/cpu"
    finally:
        await s.stop()


async def test_a_model_no_node_can_hold_is_refused_with_the_reasons():
    nowhere, huge = model("nowhere", 0.1, resources={"a100": 1}), model("huge", 3)
    s, _ = make(nowhere, huge)
    await s.start()
    try:
        with pytest.raises(Unavailable) as info:
            await s.run(nowhere, where)
        assert "no node of the cluster can hold model 'nowhere'" in info.value.message
        assert "alpha/cpu: the node offers 0 a100, the model asks for 1" in info.value.message
        with pytest.raises(OutOfMemory) as big:
            await s.run(huge, where)
        assert "alpha/cpu: model 'huge' needs 2861 MiB but the alpha/cpu budget is 1907 MiB" in big.value.message
        assert s.model_state(huge) == {**s.model_state(huge), "device": None, "loaded": False}
    finally:
        await s.stop()


async def test_a_node_that_leaves_takes_its_models_and_its_queued_work_moves():
    roaming = model("roaming", 0.2)
    s, cluster = make(roaming, nodes=(BETA, ALPHA))
    await s.start()
    gate = asyncio.Event()

    async def held(provider: Provider, ctx: RunContext) -> str:
        await gate.wait()
        return ctx.device

    sub = s.events.subscribe()
    try:
        assert await s.run(roaming, where) == "alpha/cpu"
        # Make alpha the node that leaves: its running call holds the model's only slot.
        running = asyncio.ensure_future(s.run(roaming, held))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(s.run(roaming, where))
        await asyncio.sleep(0.05)
        assert s.devices["alpha/cpu"].queue.count("roaming") == 1
        cluster.on_nodes([BETA])
        assert "alpha/cpu" not in s.devices and "alpha" not in s.placement.nodes
        assert await asyncio.wait_for(queued, 10) == "beta/cpu"  # moved, loaded there, answered
        assert s.model_state(roaming)["device"] == "beta/cpu"
        gate.set()
        await asyncio.wait_for(running, 10)  # (an in-process worker cannot be killed; Ray's is)
        events = []
        while not sub._queue.empty():
            events.append(sub._queue.get_nowait())
        off = [e for e in events if e["type"] == "unloaded" and e["model"] == "roaming"]
        assert off[0]["device"] == "alpha/cpu" and off[0]["reason"] == "node_lost"
        moved = [e for e in events if e["type"] == "moved"]
        assert moved[0]["device"] == "alpha/cpu" and moved[0]["to"] == "beta/cpu"
        assert [e["state"] for e in events if e["type"] == "node" and e["node"] == "alpha"] == ["left"]
        # It comes back: its devices with it, empty.
        cluster.on_nodes([ALPHA, BETA])
        assert s.devices["alpha/cpu"].ledger.resident == {}
    finally:
        gate.set()
        sub.close()
        await s.stop()


async def test_without_a_cluster_executor_the_snapshot_has_no_nodes():
    config = Config(scheduler=SchedulerConfig(devices={"cpu": DeviceBudget(budget="1GB")}))
    s = Scheduler(config, ModelRegistry())
    assert "nodes" not in s.snapshot() and "ray" not in s.executors
    assert all("node" not in d for d in s.snapshot()["devices"])
