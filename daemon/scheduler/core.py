"""The scheduler: what is resident, what runs next, on which device, in which worker.

:class:`Scheduler` is the face the routes, jobs, admin API and TUI use (``run``, ``stream``,
``load``, ``unload``, ``pin``, ``cancel``, ``events``, ``metrics``, ``snapshot``). It composes
parts with narrow interfaces, each testable alone:

- :class:`~.dispatch.Dispatcher`: admission, the per-device queues, what starts next;
- :class:`~.residency.Residents`: loads (a typed :class:`~.residency.LoadPlan`), evictions,
  unloads, pins, keep-alive, and what a crashed worker leaves behind;
- :class:`~.execution.Execution`: one started item on its worker (OOM retry, hung-call watchdog);
- the executors (:mod:`loom.daemon.workers`): where a loaded model runs, in process, in a
  worker process of its own, or in a Ray actor on a node of a cluster;
- :class:`~.placement.Placement`: the cluster's nodes as devices, and the device a cluster
  model loads on (chosen per load: free memory, the model's resources and node, affinity);
- :func:`~.snapshot.snapshot`, ``policy``, ``ledger``, ``devices``, ``events``, ``metrics``.

Ids: each item has an id (``wk_...``); it is set on ``ctx.work_id`` and in the
:data:`current_work_id` context variable, and :meth:`Scheduler.cancel` takes it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, cast

from loom.sdk.errors import LoomError, Unavailable
from loom.sdk.protocols import Provider, RunContext

from ..config import Config
from ..models import ModelEntry, ModelRegistry
from ..timers import Timers
from ..workers import ClusterExecutor, Executor, NodeInfo, Work, make_executors
from . import images
from .chunks import ChunkCheck
from .devices import REMOTE, discover, normalize
from .dispatch import Dispatcher
from .events import EventBus
from .execution import END, Execution
from .ledger import Ledger
from .metrics import SchedulerMetrics
from .placement import Placement
from .policy import Policy, make_policy
from .queues import Priority, WorkItem, current_queue_position, current_work_id
from .residency import Residents
from .snapshot import model_state, snapshot
from .state import DeviceState
from .tasks import TaskSet

if TYPE_CHECKING:
    from ..tracing import Tracing

__all__ = ["Priority", "Scheduler", "current_work_id"]

log = logging.getLogger("loom.scheduler")


def _noop(provider: Provider, ctx: RunContext) -> None:
    return None


class Scheduler:
    def __init__(
        self,
        config: Config,
        registry: ModelRegistry,
        *,
        policy: str | Policy | None = None,
        executors: Mapping[str, Executor] | None = None,
        nvml: Any = None,
        timers: Timers | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``timers`` is the daemon's timer service (the keep-alive sweep registers there and the
        app starts it); without one the scheduler runs a timer service of its own. ``tracing``:
        the daemon's tracer when traces are on (:mod:`loom.daemon.tracing`)."""
        self.config = config
        self.registry = registry
        self.policy = make_policy(config.scheduler.policy if policy is None else policy, config.scheduler.max_age)
        if executors is None:
            executors = make_executors(config.scheduler, {e.executor for e in registry})
        self.executors: Mapping[str, Executor] = executors
        self.events = EventBus()
        cluster = {name for name, ex in self.executors.items() if ex.cluster}
        local_devices = {e.spec.device for e in registry if e.local and e.executor not in cluster}
        infos, self.auto_device = discover(config, local_devices, nvml=nvml)
        #: Every device: the daemon's machine's, then (with a cluster executor) each node's,
        #: "NODE/DEVICE", added and removed as nodes come and go.
        self.devices: dict[str, DeviceState] = {
            name: DeviceState(info, Ledger(name, info.budget)) for name, info in infos.items()
        }
        self.metrics = SchedulerMetrics(self.devices, nodes=lambda: self.placement.nodes)
        self.pinned: set[str] = {e.id for e in registry if e.config.pin}
        self.tasks = TaskSet()
        self.residents = Residents(
            registry=registry,
            devices=self.devices,
            policy=self.policy,
            executors=self.executors,
            events=self.events,
            metrics=self.metrics,
            pinned=self.pinned,
            slots=lambda entry: self.slots(entry) + self.preemptible(entry),
            changed=lambda dev: self.dispatcher.kick(dev),
        )
        self.dispatcher = Dispatcher(
            config=config,
            devices=self.devices,
            policy=self.policy,
            residents=self.residents,
            execution=Execution(self.residents, self.metrics),
            events=self.events,
            metrics=self.metrics,
            tasks=self.tasks,
            slots=self.slots,
            tracing=tracing,
            preemptible=self.preemptible,
        )
        self.placement = Placement(
            config=config, devices=self.devices, residents=self.residents, executors=self.executors
        )
        self._own_timers = timers is None
        self.timers = Timers() if timers is None else timers
        self.timers.every(config.scheduler.keep_alive_interval, self.expire_idle, id="loom-keep-alive")
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster when a cluster executor is configured (its nodes become devices),
        load pinned models in the background (and start the keep-alive timer when the timer
        service is the scheduler's own)."""
        self.dispatcher.closed = False
        self.events._bind(again=True)
        for executor in self.executors.values():
            if executor.cluster:
                # ``cluster = True`` is the executor's word that it is a ClusterExecutor.
                cluster = cast(ClusterExecutor, executor)
                self.nodes_changed(await cluster.open(self.nodes_changed))
        self._started = True
        if self._own_timers:
            self.timers.start()
        for m in sorted(self.pinned):
            entry = self.registry.entries.get(m)
            if entry is not None:
                self.tasks.spawn(self._preload(entry))

    async def stop(self) -> None:
        if self.dispatcher.closed:
            return
        self._started = False
        if self._own_timers:
            self.timers.stop()
        self.dispatcher.shutdown()
        await self.tasks.wait(timeout=10)
        await self.residents.unload_all("shutdown")
        for executor in self.executors.values():
            await executor.close()
        self.events.close()

    # --- models added and removed while running (POST / DELETE /admin/models) --------------------

    def add_model(self, entry: ModelEntry) -> None:
        """Take on a model the registry just gained, and its pin (loaded now when running)."""
        if not self.knows_device(entry):
            raise Unavailable(
                f"model '{entry.id}' is placed on {self.device_of(entry)}, which Loom did not set up "
                "at start; restart Loom to use a new device"
            )
        if entry.config.pin:
            self.pinned.add(entry.id)
            if self._started:  # load it now, as start() does for pinned models
                self.tasks.spawn(self._preload(entry))

    async def remove_model(self, entry: ModelEntry) -> None:
        """Let go of a model before the registry drops it: its queued work fails, running work
        finishes, then it is unloaded. The caller removes it from the registry right after."""
        gone = Unavailable(f"model '{entry.id}' was removed")
        self.dispatcher.drop_model(entry, gone)
        self.residents.set_pinned(self.where(entry), entry.id, False)
        await self.unload(entry)
        # Work that arrived while it drained: the registry still named it until now.
        self.dispatcher.drop_model(entry, gone)
        self.residents.forget(entry.id)
        self.dispatcher.forget(entry.id)

    async def _preload(self, entry: ModelEntry) -> None:
        try:
            await self.load(entry)
        except Exception as e:
            log.warning("could not load pinned model %s: %s", entry.id, e)

    # --- devices and slots ---------------------------------------------------------------------

    def device_of(self, entry: ModelEntry) -> str:
        """The name of the device ``entry`` runs on: fixed by its config on the daemon's machine;
        for a cluster model, where it is now ("" when nowhere)."""
        if self.placement.clustered(entry):
            dev = self.placement.locate(entry)
            return "" if dev is None else dev.name
        if not entry.local:
            return REMOTE
        device = entry.spec.device or "auto"
        return self.auto_device if device == "auto" else normalize(device)

    def knows_device(self, entry: ModelEntry) -> bool:
        """Whether ``entry``'s device was set up at start (a cluster model's is chosen per load)."""
        return self.placement.clustered(entry) or self.device_of(entry) in self.devices

    def device(self, entry: ModelEntry) -> DeviceState:
        """The device new work for ``entry`` goes to (a cluster model is placed now if it is
        nowhere); raises when there is none."""
        if self.placement.clustered(entry):
            return self.placement.place(entry)
        name = self.device_of(entry)
        dev = self.devices.get(name)
        if dev is None:
            raise Unavailable(f"model '{entry.id}' is placed on {name}, which Loom does not know")
        return dev

    def where(self, entry: ModelEntry) -> DeviceState | None:
        """The device that holds or will hold ``entry`` now, without placing it."""
        if self.placement.clustered(entry):
            return self.placement.locate(entry)
        return self.devices.get(self.device_of(entry))

    def slots(self, entry: ModelEntry) -> int:
        """Items of this model that may run at once: the config's, else what its provider serves
        at once (``Provider.concurrency()``: a llamacpp model's ``parallel``), else 1 (local) or
        16 (remote)."""
        if entry.config.concurrency:
            return entry.config.concurrency
        if entry.local:
            return entry.instance().concurrency() or 1
        return 16

    def preemptible(self, entry: ModelEntry) -> int:
        """Runs beyond its slots a model takes by pausing ones of a lower priority
        (``Provider.preemption()``). None when the config sets ``concurrency``: the scheduler's
        slots are then not the provider's, and the provider orders what it queues itself."""
        if entry.config.concurrency or not entry.local:
            return 0
        return max(0, entry.instance().preemption())

    def is_loaded(self, entry: ModelEntry) -> bool:
        dev = self.where(entry)
        return dev is not None and entry.id in dev.ledger.resident

    def queue_state(self, entry: ModelEntry) -> tuple[bool, int]:
        """(every slot of ``entry`` is taken, how many of its items wait)."""
        dev = self.where(entry)
        if dev is None:
            if self.placement.clustered(entry):
                return False, 0
            dev = self.device(entry)  # raises: its device is unknown
        return dev.busy.get(entry.id, 0) >= self.slots(entry), self.dispatcher.waiting(dev, entry)

    # --- running ---------------------------------------------------------------------------------

    def _submit(self, entry: ModelEntry, call: Work, priority: Priority, ctx: RunContext | None, **kw) -> WorkItem:
        item = self.dispatcher.submit(self.device(entry), entry, call, priority, ctx, **kw)
        current_work_id.set(item.id)
        current_queue_position.set(item.position)
        return item

    async def run(
        self,
        entry: ModelEntry,
        call: Work,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> Any:
        """Run ``call`` (a :class:`~loom.sdk.calls.Call`, or in process a function of
        ``(provider, ctx)``) once its model is resident and a slot is free.

        A streaming call's chunks (a generator's items) are collected where it runs and returned
        as a list.
        """
        split = images.to_split(entry, call)
        if split is not None:
            # n images as several items, so chat waits for one of them, not for all (.images).
            return await images.run_split(self, entry, split, priority, ctx)
        return await self.result(self._submit(entry, call, priority, ctx))

    async def result(self, item: WorkItem) -> Any:
        """Wait for a submitted item to start and end; its result. Cancelled while waiting
        (the caller went away), the item is abandoned: dropped when queued, cancelled when running."""
        return await self.dispatcher.wait_done(item)

    async def collect(
        self,
        entry: ModelEntry,
        call: Work,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> list[Any]:
        """A streaming call's chunks as one list, once it has ended: for a caller that wants the
        whole answer (a chat completion that is not streamed). It runs as :meth:`stream` does (each
        chunk feeds the hung-call watchdog and the metrics as it comes), but the chunks are kept
        where they are made instead of crossing to the caller one by one."""
        chunks = await self.result(self._submit(entry, call, priority, ctx, stream=True, collect=True))
        check = ChunkCheck(entry.id, call)
        for chunk in chunks:
            check(chunk)
        return chunks

    async def stream(
        self,
        entry: ModelEntry,
        call: Work,
        *,
        priority: Priority = Priority.INTERACTIVE,
        ctx: RunContext | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Iterate a streaming call's chunks as the model produces them.

        Closing the iterator early (a client that disconnects) cancels the work.
        """
        item = self._submit(entry, call, priority, ctx, stream=True)
        chunks = item.chunks
        assert chunks is not None, "a stream's item has its channel"
        check = ChunkCheck(entry.id, call)
        try:
            await self.dispatcher.wait_started(item)
            while True:
                tag, value = await chunks.get()
                if tag == END:
                    if value is not None:
                        raise value
                    return
                check(value)
                yield value
        finally:
            self.dispatcher.abandon(item)  # a no-op once the item is done

    async def load(self, entry: ModelEntry) -> None:
        """Make ``entry`` resident (evicting others as needed)."""
        item = self._submit(entry, _noop, Priority.INTERACTIVE, None, kind="load")
        await self.dispatcher.wait_started(item)

    async def unload(self, entry: ModelEntry) -> bool:
        """Unload ``entry`` once its running work is done; False when it was not resident."""
        dev = self.where(entry) if self.placement.clustered(entry) else self.device(entry)
        return dev is not None and await self.residents.unload(dev, entry.id)

    async def keep_alive(self, entry: ModelEntry, seconds: float) -> bool:
        """A request's keep-alive (Ollama's): keep ``entry`` resident ``seconds`` after its last
        use instead of its configured ``keep_alive`` (``math.inf``: until memory is needed), or
        with 0 unload it once its running work is done (a pinned model stays). False when it is
        not resident."""
        if seconds == 0:
            return entry.id not in self.pinned and await self.unload(entry)
        dev = self.where(entry) if self.placement.clustered(entry) else self.device(entry)
        return dev is not None and self.residents.set_keep_alive(dev, entry.id, seconds)

    async def pin(self, entry: ModelEntry, pinned: bool = True) -> dict:
        """Pin (never evicted, no keep-alive; loaded now) or unpin a model."""
        dev = self.where(entry) if self.placement.clustered(entry) else self.device(entry)
        m = entry.id
        was = m in self.pinned
        self.residents.set_pinned(dev, m, pinned)
        if pinned:
            try:
                await self.load(entry)
            except BaseException:
                self.residents.set_pinned(self.where(entry), m, was)
                raise
            dev = self.where(entry)
        self.events.emit("pinned", model=m, device=dev.name if dev else None, pinned=pinned)
        if dev is not None:
            self.dispatcher.kick(dev)
        return self.model_state(entry)

    def cancel(self, item_id: str) -> bool:
        """Cancel queued (removed, never run) or running (``ctx.cancel()``) work by id."""
        return self.dispatcher.cancel(item_id)

    async def expire_idle(self, now: float | None = None) -> list[str]:
        """Unload every model idle longer than its keep-alive; returns their ids.

        Called by the keep-alive timer; tests call it with a ``now`` in the future.
        """
        return await self.residents.expire_idle(now)

    # --- the cluster's nodes --------------------------------------------------------------------

    def nodes_changed(self, nodes: list[NodeInfo]) -> None:
        """A cluster executor's node list changed: new nodes' devices join; a node that left
        takes its models off the ledger (its running calls fail as crashes), and its queued work
        goes to another node."""
        joined, left = self.placement.update(nodes)
        for node in joined:
            self.events.emit("node", node=node.name, state="joined", address=node.address, error=node.error or None)
        gone = sorted({dev.info.node for dev in left if dev.info.node})
        for dev in left:
            reason = dev.info.reason
            for m, worker in list(dev.workers.items()):
                worker.kill(reason)
                self.residents.lost(dev, m, worker, reason, why="node_lost")
        for dev in left:
            for item in list(dev.queue):
                try:
                    to = self.placement.place(item.entry)
                except LoomError as e:
                    self.dispatcher.drop(item, e, "failed", stage="placement")
                else:
                    self.dispatcher.move(item, to)
        for dev in left:
            self.placement.drop(dev)
        for name in gone:
            self.events.emit("node", node=name, state="left")

    # --- seeing it -------------------------------------------------------------------------------

    def model_state(self, entry: ModelEntry) -> dict:
        return model_state(self, entry)

    def snapshot(self) -> dict:
        return snapshot(self)
