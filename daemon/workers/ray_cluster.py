"""The daemon's connection to a Ray cluster, and its view of the cluster's nodes.

The daemon joins the cluster as a Ray driver (``ray.init(address=...)``); it starts nothing on
it but the actors of loaded models (and a probe per node). The node list comes from Ray's
control store (``ray.nodes()``), read every ``poll`` seconds; each node that joins is measured
once by a probe task pinned to it (host memory, each GPU's memory), with Loom's own code, so a
node without Loom installed shows as unusable with the reason. Node names are the ``loom-node``
label when a node has one, else its host name (with a suffix of its id when two nodes share it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import msgspec
from loom.sdk.errors import ConfigError

from .base import NodeInfo

log = logging.getLogger("loom.workers")

#: The Ray node label that names a node in Loom (``ray start --labels loom-node=gpu-a``).
NAME_LABEL = "loom-node"
#: How long a new node's probe may take (it starts a Ray worker process there).
PROBE_TIMEOUT = 60.0


def import_ray() -> Any:
    # Ray's native crash handler (read when Ray is first imported) would also catch the SIGTERM
    # of a normal stop, and abort the daemon 3 s later, in the middle of its graceful shutdown.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray, which is not installed: pip install 'loom-daemon[ray]'") from None
    return ray


class RayCluster:
    def __init__(self, address: str, namespace: str, poll: float) -> None:
        self.address = address
        self.namespace = namespace
        self.poll = poll
        self.ray: Any = None
        self.nodes: dict[str, NodeInfo] = {}  # by name
        self._names: dict[str, str] = {}  # Ray node id -> the name it was given
        self._probed: dict[str, NodeInfo] = {}  # Ray node id -> what its probe found
        self._task: asyncio.Task | None = None
        self._probe_fn: Any = None
        self._on_nodes: Callable[[list[NodeInfo]], None] = lambda nodes: None
        self._seen: list[NodeInfo] = []
        self._reading = asyncio.Lock()

    async def open(self, on_nodes: Callable[[list[NodeInfo]], None]) -> list[NodeInfo]:
        """Connect and read the nodes; then watch them, calling ``on_nodes`` on every change."""
        ray = self.ray = import_ray()
        # In a thread, which also keeps ``ray.init`` from replacing the server's SIGTERM handler
        # with one that exits at once (Ray sets it only from the main thread, and logs that it did
        # not: that line is dropped, the graceful shutdown is the one wanted).
        logging.getLogger("ray._private.worker").addFilter(_not_about_sigterm)
        try:
            await asyncio.to_thread(
                ray.init,
                address=self.address,
                namespace=self.namespace,
                log_to_driver=False,
                logging_level=logging.WARNING,
                ignore_reinit_error=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"could not join the Ray cluster at {self.address!r}: {e}") from None
        self._seen = await self.read()
        self._on_nodes = on_nodes
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="loom-ray-nodes")
        return self._seen

    def node(self, name: str) -> NodeInfo | None:
        return self.nodes.get(name)

    async def refresh(self) -> None:
        """Read the nodes now and report a change (also called when an actor died: its node may
        have left, and the scheduler should know before it places anything there again)."""
        async with self._reading:
            nodes = await self.read()
            if nodes != self._seen:
                self._seen = nodes
                self._on_nodes(nodes)

    async def read(self) -> list[NodeInfo]:
        """The live nodes now (new ones probed first)."""
        raw = await asyncio.to_thread(self.ray.nodes)
        alive = [n for n in raw if n.get("Alive")]
        new = [n for n in alive if n["NodeID"] not in self._probed]
        if new:
            probed = await asyncio.gather(*(self._probe(n) for n in new))
            for n, info in zip(new, probed, strict=True):
                self._probed[n["NodeID"]] = info
        live = {n["NodeID"] for n in alive}
        for node_id in list(self._probed):
            if node_id not in live:  # gone for good: a node that comes back gets a new id
                del self._probed[node_id]
                self._names.pop(node_id, None)
        self.nodes = {info.name: info for info in (self._probed[n["NodeID"]] for n in alive)}
        return sorted(self.nodes.values(), key=lambda info: info.name)

    def _name(self, node: dict, hostname: str) -> str:
        node_id = node["NodeID"]
        name = self._names.get(node_id)
        if name is None:
            name = (node.get("Labels") or {}).get(NAME_LABEL) or hostname or node.get("NodeManagerHostname") or node_id
            if name in self._names.values():
                name = f"{name}-{node_id[:6]}"
            self._names[node_id] = name
        return name

    async def _probe(self, node: dict) -> NodeInfo:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .ray_actor import NodeProbe, probe_node

        node_id = node["NodeID"]
        resources = {k: float(v) for k, v in (node.get("Resources") or {}).items() if not k.startswith("node:")}
        labels = {k: str(v) for k, v in (node.get("Labels") or {}).items() if not k.startswith("ray.io/")}
        address = node.get("NodeManagerAddress", "")
        if self._probe_fn is None:
            self._probe_fn = self.ray.remote(num_cpus=0, max_retries=0)(probe_node)
        try:
            ref = self._probe_fn.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
            ).remote()
            probe = msgspec.msgpack.decode(await asyncio.wait_for(ref, PROBE_TIMEOUT), type=NodeProbe)
        except Exception as e:  # Loom missing there, a probe that never ran, ...
            name = self._name(node, "")
            reason = f"Loom could not measure node {name} ({address}): {_first_line(getattr(e, 'cause', None) or e)}"
            log.warning("%s; no model will be placed there", reason)
            return NodeInfo(id=node_id, name=name, address=address, resources=resources, labels=labels, error=reason)
        name = self._name(node, probe.hostname)
        log.info("Ray node %s (%s) joined: %d GPU(s)", name, address, len(probe.gpus))
        return NodeInfo(
            id=node_id,
            name=name,
            address=address,
            resources=resources,
            labels=labels,
            memory=probe.memory,
            gpus=dict(probe.gpus),
        )

    async def _watch(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the control store unreachable: keep the last view
                if not failing:
                    log.warning("could not read Ray's node list: %s", _first_line(e))
                failing = True
                continue
            failing = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.ray is not None and self.ray.is_initialized():
            await asyncio.to_thread(self.ray.shutdown)


def _not_about_sigterm(record: logging.LogRecord) -> bool:
    return "SIGTERM handler is not set" not in record.getMessage()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
