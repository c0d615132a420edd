"""Placement: the devices of a cluster's nodes, and which of them a cluster model loads on.

With a cluster executor (Ray), each node's devices join the scheduler's devices as ``NODE/cpu``
and ``NODE/cuda:N``, each with a ledger of its own; their budgets come from
``[scheduler.devices]`` (the node's own key ``"gpu-a/cuda:0"``, else the device's ``"cuda:0"``)
applied to the totals measured on the node. A node that leaves takes its devices with it.

A cluster model has no fixed device. Its work goes to the device that holds it, is loading it
or already has its work queued; when there is none, a device is chosen for it: of the devices
the model may use (the kind its ``device`` asks for; a node with the labels, custom resources
and GPUs its ``ray`` table asks for, or the node it names), those where it can fit at all,
preferring one where it fits without evicting anything, then the node it last ran on
(affinity: its files are in that node's page cache), then the most free memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, MutableMapping

from loom.sdk.errors import OutOfMemory, Unavailable

from ..config import Config, DeviceBudget
from ..models import ModelEntry
from ..workers import Executor, NodeInfo
from .devices import Device, device_budget, normalize
from .ledger import Ledger
from .oom import as_loom_error
from .residency import Residents
from .state import DeviceState


class Placement:
    def __init__(
        self,
        *,
        config: Config,
        devices: MutableMapping[str, DeviceState],
        residents: Residents,
        executors: Mapping[str, Executor],
    ) -> None:
        self.config = config
        self.devices = devices
        self.residents = residents
        #: Names of the executors whose workers run on a cluster.
        self.cluster_executors = {name for name, ex in executors.items() if ex.cluster}
        self.nodes: dict[str, NodeInfo] = {}  # by name
        self._last_node: dict[str, str] = {}  # model -> the node it was last placed on

    @property
    def enabled(self) -> bool:
        """A cluster executor is configured (the snapshot shows nodes)."""
        return bool(self.cluster_executors)

    def clustered(self, entry: ModelEntry) -> bool:
        return entry.local and entry.executor in self.cluster_executors

    def cluster_devices(self) -> Iterable[DeviceState]:
        return (dev for dev in list(self.devices.values()) if dev.info.node is not None)

    # --- nodes joining and leaving --------------------------------------------------------------

    def update(self, nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[DeviceState]]:
        """Take in the cluster's node list: devices for new nodes; the devices of nodes that left
        are marked unavailable and returned (the scheduler empties them, then :meth:`drop`)."""
        current = {n.name: n for n in nodes}
        left: list[DeviceState] = []
        for name, old in list(self.nodes.items()):
            new = current.get(name)
            if new is None or new.id != old.id:
                del self.nodes[name]
                for dev in self.cluster_devices():
                    if dev.info.node == name:
                        dev.info.available = False
                        dev.info.reason = f"node {name} left the cluster"
                        left.append(dev)
        joined = []
        for node in nodes:
            if node.name not in self.nodes:
                joined.append(node)
            self.nodes[node.name] = node
            self._add_devices(node)
        return joined, left

    def _add_devices(self, node: NodeInfo) -> None:
        configured = {normalize(k): v for k, v in self.config.scheduler.devices.items()}
        local = {"cpu": ("cpu", node.memory)} | {f"cuda:{i}": ("cuda", total) for i, total in sorted(node.gpus.items())}
        for short, (kind, total) in local.items():
            name = f"{node.name}/{short}"
            if name in self.devices:
                dev = self.devices[name]
                dev.info.available, dev.info.reason = not node.error, node.error
                continue
            cfg = configured.get(normalize(name)) or configured.get(short) or DeviceBudget()
            budget, headroom = device_budget(name, cfg, total)
            info = Device(name, kind, total, budget, headroom, cfg.parallel, node=node.name)
            if node.error:
                info.available, info.reason = False, node.error
            self.devices[name] = DeviceState(info, Ledger(name, budget))

    def drop(self, dev: DeviceState) -> None:
        """Forget a device of a node that left (nothing is queued on it any more)."""
        if self.devices.get(dev.name) is dev:
            del self.devices[dev.name]

    # --- where a model goes ---------------------------------------------------------------------

    def locate(self, entry: ModelEntry) -> DeviceState | None:
        """The device that holds ``entry``, is loading it, or has its work (None: nowhere now)."""
        m = entry.id
        for dev in self.cluster_devices():
            if not dev.info.available:
                continue
            if m in dev.ledger.resident or dev.loading == m or dev.busy.get(m) or dev.queue.count(m):
                return dev
        return None

    def place(self, entry: ModelEntry) -> DeviceState:
        """Where new work for ``entry`` goes: where it is, else a device chosen now."""
        return self.locate(entry) or self.choose(entry)

    def choose(self, entry: ModelEntry) -> DeviceState:
        m = entry.id
        try:
            need = self.residents.estimate(entry)
        except Exception as e:  # the provider could not even estimate (a missing file, ...)
            raise as_loom_error(e, m, "the cluster", "estimate") from None
        now = time.monotonic()
        fits, too_small, refused = [], [], []
        for dev in self.cluster_devices():
            why = self.unfit(entry, dev)
            if why is None:
                plan = self.residents.plan(dev, entry, now)
                if plan.verdict == "never":
                    why = plan.reason
                    too_small.append(dev)
            if why is None:
                fits.append(dev)
            else:
                refused.append(f"{dev.name}: {why}")
        if not fits:
            if not self.nodes:
                raise Unavailable(f"model '{m}' runs on the Ray cluster, which has no node Loom can use")
            detail = "; ".join(refused) or "no device of the kind it asks for"
            # Devices it may use exist but are all too small: out of memory; else unavailable.
            error = OutOfMemory if too_small else Unavailable
            raise error(f"no node of the cluster can hold model '{m}': {detail}")
        last = self._last_node.get(m)
        prefer_gpu = (entry.spec.device or "auto") == "auto"

        def rank(dev: DeviceState):
            free = dev.ledger.free
            return (
                0 if (dev.info.kind == "cuda" or not prefer_gpu) else 1,
                0 if need <= free else 1,
                0 if dev.info.node == last else 1,
                -free,
                dev.name,
            )

        dev = min(fits, key=rank)
        self._last_node[m] = dev.info.node or ""
        return dev

    def unfit(self, entry: ModelEntry, dev: DeviceState) -> str | None:
        """Why ``entry`` may not load on ``dev`` at all (None: it may)."""
        if not dev.info.available:
            return dev.info.reason or "not available"
        node = self.nodes.get(dev.info.node or "")
        if node is None:
            return "its node is gone"
        wanted = (entry.spec.device or "auto").strip().lower()
        kind, short = dev.info.kind, dev.name.rpartition("/")[2]
        if wanted == "cpu" and kind != "cpu":
            return "the model asks for the CPU"
        if wanted == "cuda" and kind != "cuda":
            return "the model asks for a GPU"
        if wanted.startswith("cuda:") and short != wanted:
            return f"the model asks for {wanted}"
        if wanted not in ("auto", "cpu", "cuda") and not wanted.startswith("cuda:"):
            return f"the model asks for device {wanted!r}, which a node does not have"
        ray = entry.config.ray
        if ray.node is not None and ray.node != node.name:
            return f"the model is pinned to node {ray.node}"
        for key, value in ray.labels.items():
            if node.labels.get(key) != value:
                return f"the node has no label {key}={value}"
        asks = dict(ray.resources)
        if ray.num_gpus:
            asks["GPU"] = ray.num_gpus
        if ray.num_cpus:
            asks["CPU"] = ray.num_cpus
        for resource, amount in asks.items():
            if node.resources.get(resource, 0.0) < amount:
                return (
                    f"the node offers {node.resources.get(resource, 0.0):g} {resource}, the model asks for {amount:g}"
                )
        return None

    # --- seeing it ------------------------------------------------------------------------------

    def describe(self) -> list[dict]:
        """The nodes for the snapshot."""
        out = []
        for name, node in sorted(self.nodes.items()):
            out.append(
                {
                    "name": name,
                    "id": node.id,
                    "address": node.address,
                    "usable": not node.error,
                    "error": node.error or None,
                    "resources": node.resources,
                    "labels": node.labels,
                    "memory": node.memory,
                    "gpus": len(node.gpus),
                    "devices": sorted(d.name for d in self.cluster_devices() if d.info.node == name),
                }
            )
        return out
