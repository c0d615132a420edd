"""The Ray executor: each loaded model is a Ray actor (:mod:`.ray_actor`) on a node of a Ray
cluster, created at the load and killed at the unload.

The scheduler picks the node and the device (its ledger is per node and per device; devices are
named ``NODE/DEVICE``); this module only carries it out. The actor is pinned to that node
(``NodeAffinitySchedulingStrategy``, not soft) and asks Ray for the model's ``ray`` resources
(``num_cpus``, ``num_gpus`` with fractions, custom ones). Which GPU of the node the model uses
is the ledger's choice: Ray is told not to set ``CUDA_VISIBLE_DEVICES`` in Loom's actors, so
``cuda:N`` means the same GPU to the provider as to NVML on that node.

A call is one streaming-generator call of the actor's ``run``; its items are the wire's frames
(``Chunk``, ``Progress``, ``Result``/``Failed``), handled by the same :class:`~.pending.PendingCalls`
as a worker process's socket. Cancellation is a call of the actor's ``cancel``. A watch call
(``until_stopped``) fails when the actor dies, whatever the cause (a crash, ``ray.kill``, its
node leaving): the calls in flight then fail with :class:`~loom.sdk.errors.WorkerCrashed` and
``exited`` resolves, as for a worker process that died.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from loom.sdk.config import RayResources
from loom.sdk.errors import ProviderError, Unavailable, WorkerCrashed
from loom.sdk.protocols import RunContext

from .base import LoadReport, NodeInfo, WorkerExit, WorkerMemory, WorkerSpec, chunks_of
from .pending import PendingCalls
from .ray_actor import CONTROL_THREADS, ModelActor
from .ray_cluster import RayCluster, import_ray
from .wire import FrameReader, FromWorker, Loaded, Run, Stopped, rebuild_error

if TYPE_CHECKING:
    from ..config import RayConfig
    from ..models import ModelEntry

log = logging.getLogger("loom.workers")

#: How long an unload may take before the actor is killed instead.
STOP_TIMEOUT = 30.0
#: How long after ``ray.kill`` the daemon waits for Ray to report the death before recording it.
KILL_GRACE = 5.0
#: Ray's switch that leaves ``CUDA_VISIBLE_DEVICES`` alone in an actor that asks for GPUs.
NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


class RayExecutor:
    name: ClassVar[str] = "ray"
    cluster: ClassVar[bool] = True

    def __init__(self, config: RayConfig) -> None:
        from ..config import parse_duration

        self.config = config
        self.place_timeout = parse_duration(config.place_timeout, "$.scheduler.ray.place_timeout")
        poll = parse_duration(config.poll, "$.scheduler.ray.poll") or 2.0
        self.view = RayCluster(config.address, config.namespace, poll)
        self.workers: set[RayWorker] = set()
        self._refreshes: set[asyncio.Future] = set()  # held so the loop does not drop them

    async def open(self, on_nodes: Callable[[list[NodeInfo]], None]) -> list[NodeInfo]:
        return await self.view.open(on_nodes)

    async def start(self, entry: ModelEntry, device: str, concurrency: int) -> RayWorker:
        name, _, local = device.rpartition("/")
        node = self.view.node(name)
        if node is None or node.error:
            why = node.error if node is not None else "it is not in the cluster"
            raise Unavailable(f"model '{entry.id}' was placed on Ray node {name!r}, which Loom cannot use: {why}")
        worker = RayWorker(
            WorkerSpec.of(entry, local, concurrency),
            device=device,
            node=node,
            request=entry.config.ray,
            place_timeout=self.place_timeout,
        )
        self.workers.add(worker)
        worker.exited.add_done_callback(self._ended(worker))
        try:
            await worker.launch()
        except Exception:
            await self._refresh()  # its node may have left: the scheduler re-places the work
            raise
        return worker

    def _ended(self, worker: RayWorker) -> Callable[[asyncio.Future], None]:
        def ended(done: asyncio.Future) -> None:
            self.workers.discard(worker)
            if not done.cancelled() and done.result().reason == "crashed":
                # A node leaving shows first as its actors dying.
                refresh = asyncio.ensure_future(self._refresh())
                self._refreshes.add(refresh)
                refresh.add_done_callback(self._refreshes.discard)

        return ended

    async def _refresh(self) -> None:
        try:
            await self.view.refresh()
        except Exception as e:
            log.warning("could not read Ray's node list: %s", e)

    async def close(self) -> None:
        for worker in list(self.workers):
            worker.kill("Loom is shutting down")
        for worker in list(self.workers):
            try:
                await asyncio.wait_for(asyncio.shield(worker.exited), KILL_GRACE)
            except (TimeoutError, asyncio.CancelledError):
                pass
        await self.view.close()


@functools.cache
def _actor_class() -> Any:
    return import_ray().remote(ModelActor)


class RayWorker:
    executor: ClassVar[str] = "ray"

    def __init__(
        self, spec: WorkerSpec, *, device: str, node: NodeInfo, request: RayResources, place_timeout: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.spec = spec
        self.model = spec.model
        self.device = device
        self.node = node.name
        self.pid: int | None = None
        self.loaded = LoadReport(seconds=0.0, reported=None)
        self.exited: asyncio.Future[WorkerExit] = loop.create_future()
        self._loop = loop
        self._ray = import_ray()
        self._node = node
        self._request = request
        self._place_timeout = place_timeout
        self._calls = PendingCalls(spec.model, "runs in a Ray actor")
        self._encoder = msgspec.msgpack.Encoder()
        self._actor: Any = None
        self._stopping = False
        self._killed: str | None = None

    def _where(self) -> str:
        pid = f"pid {self.pid} " if self.pid is not None else ""
        return f"its Ray actor ({pid}on node {self.node})"

    # --- starting ---------------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        request = self._request
        # Loom's ledger decides what fits on a node; Ray reserves only what the model asks for
        # (an actor that asks for nothing would otherwise hold a CPU for its whole life).
        options: dict[str, Any] = {
            "scheduling_strategy": NodeAffinitySchedulingStrategy(self._node.id, soft=False),
            "max_concurrency": self.spec.concurrency + CONTROL_THREADS,
            "max_restarts": 0,
            "max_task_retries": 0,
            "num_cpus": request.num_cpus or 0,
            "runtime_env": {"env_vars": {NOSET_CUDA: "1"}},
        }
        if request.num_gpus:
            options["num_gpus"] = request.num_gpus
        if request.resources:
            options["resources"] = dict(request.resources)
        return options

    async def launch(self) -> None:
        self._actor = _actor_class().options(**self._options()).remote(msgspec.msgpack.encode(self.spec))
        watch = self._actor.until_stopped.remote()
        self._watcher = self._loop.create_task(self._watch(watch), name=f"loom-ray-{self.model}")
        try:
            try:
                await asyncio.wait_for(self._get(self._actor.__ray_ready__.remote()), self._place_timeout)
            except TimeoutError:
                request = self._request
                asks = {"num_cpus": request.num_cpus or 0, "num_gpus": request.num_gpus, **request.resources}
                self.kill("Ray could not place it")
                raise Unavailable(
                    f"model '{self.model}': Ray could not place its actor on node {self.node} within "
                    f"{self._place_timeout:g}s (it asks for {asks}; other work holds them)"
                ) from None
            answer = FrameReader(FromWorker).feed(await self._get(self._actor.load.remote()))[0]
        except asyncio.CancelledError:
            self.kill("its load was abandoned")
            await asyncio.shield(self.exited)
            raise
        except BaseException:
            self.kill("its load failed")
            await asyncio.shield(self.exited)
            raise
        if not isinstance(answer, Loaded):
            self._stopping = True
            self.kill("its load failed")
            await asyncio.shield(self.exited)
            raise rebuild_error(answer.error)
        self.pid = answer.pid
        self.loaded = answer.report

    async def _watch(self, ref: Any) -> None:
        try:
            await ref
            detail = ""
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the actor died: Ray says how
            detail = _death(e)
        self._ended(detail)

    def _ended(self, detail: str) -> None:
        if self.exited.done():
            return
        what = f"{self._where()} ended" + (f": {detail}" if detail else "")
        if self._killed is not None:
            reason, detail = "killed", f"{what}; Loom killed it because {self._killed}"
        elif self._stopping:
            reason, detail = "stopped", ""
        else:
            reason, detail = "crashed", what
        if detail:
            log.log(logging.INFO if reason == "stopped" else logging.WARNING, "model %s: %s", self.model, detail)
        self._calls.fail_all(self._crash(detail or what))
        self.exited.set_result(WorkerExit(reason=reason, detail=detail))

    def _crash(self, detail: str) -> WorkerCrashed:
        return WorkerCrashed(f"model '{self.model}' crashed while serving: {detail}")

    async def _get(self, ref: Any) -> Any:
        """Await a Ray object; an actor's death becomes :class:`WorkerCrashed`."""
        try:
            return await ref
        except asyncio.CancelledError:
            raise
        except self._ray.exceptions.RayActorError as e:
            raise self._crash(f"{self._where()} ended: {_death(e)}") from None
        except self._ray.exceptions.RayError as e:
            raise ProviderError(f"model '{self.model}': Ray failed a call of {self._where()}: {_death(e)}") from None

    # --- calls ------------------------------------------------------------------------------------

    async def call(self, work: Any, ctx: RunContext) -> Any:
        return await self._run(work, ctx, None)

    async def feed(self, work: Any, ctx: RunContext, sink: Callable[[Any], None]) -> None:
        await self._run(work, ctx, sink)

    def stream(self, work: Any, ctx: RunContext) -> AsyncIterator[Any]:
        return chunks_of(self.feed, work, ctx)

    async def _run(self, work: Any, ctx: RunContext, sink: Callable[[Any], None] | None) -> Any:
        if self.exited.done():
            self._calls.open(work, ctx, sink)  # raises for work that is not a Call
            raise WorkerCrashed(f"model '{self.model}': {self.exited.result().detail or 'its actor ended'}")
        call_id, pending = self._calls.open(work, ctx, sink)
        try:
            request = self._encoder.encode(Run(call_id, work, sink is not None, int(ctx.priority)))
            items = self._actor.run.options(num_returns="streaming").remote(request)
            loop = self._loop
            pending.remove = ctx.add_cancel_callback(lambda: loop.call_soon_threadsafe(self._cancel, call_id))
            reader, deliver, future = FrameReader(FromWorker), self._calls.deliver, pending.future
            try:
                async for ref in items:
                    for message in reader.feed(await self._get(ref)):
                        deliver(message)
                    if future.done():
                        break
            except (WorkerCrashed, ProviderError) as e:
                pending.fail(e)
            if not future.done():
                pending.fail(ProviderError(f"model '{self.model}': {self._where()} ended the call without a result"))
            return await future
        except asyncio.CancelledError:
            self._cancel(call_id)  # the scheduler gave up on it (a hung call, shutdown)
            raise
        finally:
            self._calls.close(call_id)

    def _cancel(self, call_id: int) -> None:
        if self._calls.get(call_id) is not None and not self.exited.done():
            self._actor.cancel.remote(call_id)

    async def memory(self) -> WorkerMemory:
        memory = msgspec.msgpack.decode(await self._get(self._actor.memory.remote()), type=WorkerMemory)
        node = self.node
        return msgspec.structs.replace(memory, devices={f"{node}/{d}": n for d, n in memory.devices.items()})

    def kill(self, reason: str) -> bool:
        if self._actor is None or self.exited.done():
            return True
        if self._killed is None:
            self._killed = reason
        try:
            self._ray.kill(self._actor, no_restart=True)
        except Exception as e:  # already gone
            log.debug("ray.kill of model %s's actor: %s", self.model, e)
        # Ray reports the death through the watch call; if it does not soon, record it anyway.
        self._loop.call_later(KILL_GRACE, self._ended, "Ray did not confirm its death")
        return True

    async def stop(self) -> WorkerExit:
        if self.exited.done():
            return self.exited.result()
        self._stopping = True
        freed = None
        try:
            data = await asyncio.wait_for(self._get(self._actor.stop.remote()), STOP_TIMEOUT)
            stopped = FrameReader(FromWorker).feed(data)[0]
            freed = stopped.freed if isinstance(stopped, Stopped) else None
        except (TimeoutError, WorkerCrashed, ProviderError):
            self.kill("it did not stop when asked")
        except asyncio.CancelledError:
            self.kill("its unload was interrupted")
            raise
        # The model is unloaded; ending the actor's process gives back everything it held.
        try:
            self._ray.kill(self._actor, no_restart=True)
        except Exception as e:  # already gone
            log.debug("ray.kill of model %s's actor: %s", self.model, e)
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), KILL_GRACE)
        except TimeoutError:
            self._ended("")
        done = self.exited.result()
        return msgspec.structs.replace(done, freed=freed) if freed is not None else done


def _death(error: BaseException) -> str:
    """Ray's reason for a death, in a sentence ("The actor is dead because it was killed by
    `ray.kill`.", "The actor died because its node has died.")."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    line = next(
        (x for x in reversed(lines) if any(w in x.lower() for w in ("because", "died", "killed", "schedulable"))),
        lines[-1] if lines else type(error).__name__,
    )
    sentence, dot, _ = line.partition(". ")
    return sentence + dot.strip()


__all__ = ["RayExecutor", "RayWorker"]
