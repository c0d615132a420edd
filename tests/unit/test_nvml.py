"""NVML against a fake ``pynvml`` (no GPU here): device discovery without torch, budgets from the
device's memory, CUDA_VISIBLE_DEVICES, per-process GPU memory and the fallback where NVML lists
processes under other ids (a container), and a worker measuring itself on a GPU."""

from __future__ import annotations

import os
import socket
import sys
import threading
import types
from pathlib import Path

import pytest
from loom.daemon.config import Config, DeviceBudget, SchedulerConfig
from loom.daemon.scheduler.devices import discover
from loom.daemon.workers import wire
from loom.daemon.workers.nvml import GpuMeter, Nvml

GiB = 2**30
HERE = Path(__file__).resolve().parent


class FakeNvml:
    """Two GPUs (16 and 80 GiB); ``procs[i]`` lists (pid, bytes) on device i."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.inits = 0
        self.totals = [16 * GiB, 80 * GiB]
        self.used = [1 * GiB, 2 * GiB]
        self.procs: list[list[tuple[int, int | None]]] = [[], []]
        self.uuids = ["GPU-aaaa-1111", "GPU-bbbb-2222"]

    def nvmlInit(self):
        self.inits += 1
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):
        return len(self.totals)

    def nvmlDeviceGetHandleByIndex(self, i):
        if i >= len(self.totals):
            raise self.NVMLError("Invalid Argument")
        return i

    def nvmlDeviceGetUUID(self, handle):
        return self.uuids[handle].encode()

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(total=self.totals[handle], used=self.used[handle])

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in self.procs[handle]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return []


@pytest.fixture(autouse=True)
def no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_devices_and_memory():
    fake = FakeNvml()
    nvml = Nvml(fake)
    assert nvml.totals() == {0: 16 * GiB, 1: 80 * GiB}
    assert nvml.used(1) == 2 * GiB and nvml.used(5) is None
    fake.procs[1] = [(101, 3 * GiB), (102, None)]
    assert nvml.processes(1) == {101: 3 * GiB, 102: 0}
    assert fake.inits == 1  # initialised once


def test_without_nvml_there_are_no_gpus():
    nvml = Nvml(FakeNvml(fail_init=True))
    assert nvml.totals() is None and nvml.used(0) is None and nvml.processes(0) is None
    assert Nvml(object()).totals() is None  # a module without NVML at all


@pytest.mark.parametrize("visible", ["1", "GPU-bbbb"])
def test_cuda_visible_devices_renumbers(monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    nvml = Nvml(FakeNvml())
    assert nvml.totals() == {0: 80 * GiB}  # cuda:0 is the second GPU


def test_discovery_through_nvml_needs_no_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    config = Config(scheduler=SchedulerConfig(devices={"cuda:1": DeviceBudget(budget="50%", headroom="1GiB")}))
    devices, auto = discover(config, {"cpu"}, nvml=Nvml(FakeNvml()))
    assert "torch" not in sys.modules
    assert sorted(devices) == ["cpu", "cuda:0", "cuda:1", "remote"]
    assert devices["cuda:1"].total == 80 * GiB and devices["cuda:1"].budget == 39 * GiB
    assert devices["cuda:0"].available and devices["cuda:0"].budget == int(0.9 * 16 * GiB)
    assert auto == "cuda:1"


def test_a_configured_gpu_that_nvml_does_not_see(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    config = Config(scheduler=SchedulerConfig(devices={"cuda:3": DeviceBudget()}))
    devices, auto = discover(config, set(), nvml=Nvml(FakeNvml()))
    assert not devices["cuda:3"].available and devices["cuda:3"].reason == "no CUDA device 3"
    assert auto == "cpu"


def test_gpu_meter_reads_the_process_or_the_change_since_start():
    fake = FakeNvml()
    meter = GpuMeter(Nvml(fake), 0, pid=4242)
    meter.start()
    fake.procs[0] = [(4242, 5 * GiB)]
    assert meter.read() == 5 * GiB
    # in a container NVML lists host pids: this process is not among them
    fake.procs[0] = [(98765, 5 * GiB)]
    fake.used[0] = 1 * GiB + 5 * GiB
    assert meter.read() == 5 * GiB
    assert GpuMeter(Nvml(FakeNvml(fail_init=True)), 0, 1).read() is None


def test_a_worker_on_a_gpu_reports_its_nvml_memory(monkeypatch):
    """The worker's side (in a thread) with a fake NVML: its load report and memory queries
    carry its GPU memory on the device it was placed on."""
    from loom.daemon.workers import child, host
    from loom.daemon.workers.base import WorkerSpec, qualified_name
    from loom.sdk.protocols import ModelSpec

    sys.path.insert(0, str(HERE))
    try:
        from worker_providers import Probe, ProbeOptions
    finally:
        sys.path.remove(str(HERE))

    fake = FakeNvml()
    fake.procs[1] = [(os.getpid(), 3 * GiB)]
    monkeypatch.setattr(host, "Nvml", lambda: Nvml(fake))  # the model host measures
    spec = WorkerSpec(
        model="probe",
        provider=qualified_name(Probe),
        spec=ModelSpec(id="probe", provider="probe", options=ProbeOptions()),
        device="cuda:1",
    )
    ours, theirs = socket.socketpair()
    server = child.WorkerServer(theirs)
    thread = threading.Thread(target=server.serve)
    thread.start()
    framer, reader = wire.Framer(), wire.FrameReader(wire.FromWorker)

    def ask(message):
        ours.sendall(framer.frame(message))
        got = []
        while not got:
            got = reader.feed(ours.recv(65536))
        return got[0]

    loaded = ask(wire.Load(spec))
    assert loaded.report.measured == 3 * GiB and loaded.report.whole
    fake.procs[1] = [(os.getpid(), 4 * GiB)]
    memory = ask(wire.MemoryQuery(1)).memory
    assert memory.devices == {"cuda:1": 4 * GiB} and memory.on("cuda:1") == 4 * GiB
    ask(wire.Shutdown(2))
    thread.join(5)
    ours.close()
