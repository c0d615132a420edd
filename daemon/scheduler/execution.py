"""Running work items: provider calls on the device's lane, streams chunk by chunk, the retry
after an out-of-memory error, and settling each item exactly once."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from loom.sdk.errors import Cancelled
from loom.sdk.calls import CAPABILITY_METHODS, Call
from loom.sdk.protocols import Provider

from .oom import as_loom_error, is_oom
from .queues import State, WorkItem
from .residency import DeviceState

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("loom.scheduler")

CHUNK, END = "chunk", "end"


class ExecutionOps:
    """Mixed into :class:`Scheduler`."""

    async def _execute(self: Scheduler, dev: DeviceState, item: WorkItem) -> None:
        provider = item.entry.instance()
        result, error = None, None
        t0 = time.monotonic()
        try:
            for attempt in (1, 2):
                try:
                    if item.stream:
                        await self._pump(dev, item, provider)
                    else:
                        result = await self._invoke(dev, item, provider)
                    error = None
                    break
                except Exception as e:
                    error = e
                    if attempt == 1 and is_oom(e) and not item.ctx.cancelled and not item.yielded:
                        self.metrics.oom.labels(dev.name, item.model, "run").inc()
                        log.warning("%s: out of memory while running (%s); evicting others, retrying", item.model, e)
                        if await self._evict_for_oom(dev, keep=item.model):
                            continue
                    break
        except Exception as e:  # evicting after an OOM failed
            error = e
        except BaseException:  # the task was cancelled: only at shutdown
            item.ctx.cancel()
            error = Cancelled("cancelled: Loom is shutting down")
            raise
        finally:
            self._finish(dev, item, result, error, time.monotonic() - t0)

    async def _invoke(self: Scheduler, dev: DeviceState, item: WorkItem, provider: Provider) -> Any:
        call, ctx = as_function(item.call), item.ctx
        if inspect.iscoroutinefunction(call) or on_loop(item.entry.provider_cls):
            out = call(provider, ctx)
        else:

            def work():
                produced = call(provider, ctx)
                return list(produced) if inspect.isgenerator(produced) else produced

            out = await self.executor.call(self._lane(dev, item.entry), work)
        if inspect.isasyncgen(out):
            out = [x async for x in out]
        elif inspect.isawaitable(out):
            out = await out
        return out

    async def _pump(self: Scheduler, dev: DeviceState, item: WorkItem, provider: Provider) -> None:
        """Move a stream's chunks into ``item.chunks``: sync generators on the device's thread."""
        loop = asyncio.get_running_loop()
        call, ctx = as_function(item.call), item.ctx

        def emit(chunk: Any) -> None:
            self.metrics.count_output(item.model, chunk)
            item.chunks.put_nowait((CHUNK, chunk))

        def work():
            produced = call(provider, ctx)
            if inspect.isasyncgen(produced) or inspect.isawaitable(produced):
                return produced  # iterated on the loop below
            it = iter(produced)
            try:
                for chunk in it:
                    if ctx.cancelled:
                        raise Cancelled("cancelled")
                    item.yielded = True
                    loop.call_soon_threadsafe(emit, chunk)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            return None

        if inspect.iscoroutinefunction(call) or on_loop(item.entry.provider_cls):
            rest = call(provider, ctx)
        else:
            rest = await self.executor.call(self._lane(dev, item.entry), work)
        if rest is None:
            return
        if inspect.isawaitable(rest) and not inspect.isasyncgen(rest):
            rest = await rest
        try:
            async for chunk in rest:
                if ctx.cancelled:
                    raise Cancelled("cancelled")
                item.yielded = True
                emit(chunk)
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()

    def _finish(
        self: Scheduler, dev: DeviceState, item: WorkItem, result: Any, error: BaseException | None, seconds: float
    ):
        m = item.model
        now = time.monotonic()
        dev.running.pop(item.id, None)
        dev.busy[m] -= 1
        if dev.busy[m] <= 0:
            del dev.busy[m]
        r = dev.ledger.resident.get(m)
        if r is not None:
            r.last_used = now
        if not dev.busy.get(m) and not dev.queue.count(m):
            self.policy.idle(m, now)
        item.state = State.DONE
        self._items.pop(item.id, None)
        if error is None:
            outcome = "finished"
            avg = self._run_seconds.get(m)
            self._run_seconds[m] = seconds if avg is None else 0.8 * avg + 0.2 * seconds
            if not item.stream:
                self.metrics.count_output(m, result)
        elif item.ctx.cancelled or isinstance(error, Cancelled):
            outcome = "cancelled"
            error = error if isinstance(error, Cancelled) else Cancelled("cancelled")
        else:
            outcome = "failed"
            error = as_loom_error(error, m, dev.name, "run")
        item.outcome = outcome
        self.metrics.run.labels(m).observe(seconds)
        self.metrics.items.labels(m, outcome).inc()
        fields = {"seconds": round(seconds, 4), "ran": True}
        if error is not None:
            fields["error"] = getattr(error, "message", str(error))
        self._publish(outcome, item, **fields)
        if item.stream:
            item.chunks.put_nowait((END, error))
        if error is None:
            item.done.set_result(result)
        else:
            item.done.set_exception(error)
        if item.entry.keep_alive == 0:
            self._spawn(self._expire(dev, m))
        self._kick(dev)


def as_function(call: Any) -> Any:
    """A work item's call as ``fn(provider, ctx)``: a :class:`~loom.sdk.calls.Call` (what the routes
    and jobs send) or, for the scheduler's own loads and its tests, a plain function."""
    return call.apply if isinstance(call, Call) else call


@functools.cache
def on_loop(provider_cls: type) -> bool:
    """True when every capability method of the provider is ``async``: calling one only makes a
    coroutine or async generator, so it can start on the event loop and skip the thread hop
    (remote providers). Sync methods always run on the device's thread."""
    methods = [
        getattr(provider_cls, name, None)
        for capability in getattr(provider_cls, "capabilities", ())
        for name in CAPABILITY_METHODS[capability]
    ]
    return bool(methods) and all(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m) for m in methods)
