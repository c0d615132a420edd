"""What ``GET /admin/scheduler`` shows: devices, resident models (and their workers), queues and
running work, and with a cluster executor its nodes. Plain functions of the scheduler's public
state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..models import ModelEntry

if TYPE_CHECKING:
    from .core import Scheduler
    from .queues import WorkItem


def model_state(scheduler: Scheduler, entry: ModelEntry) -> dict:
    """One model's state; a cluster model resident nowhere has ``device`` None."""
    dev = scheduler.where(entry) if scheduler.placement.clustered(entry) else scheduler.device(entry)
    r = dev.ledger.resident.get(entry.id) if dev is not None else None
    out = {
        "model": entry.id,
        "device": dev.name if dev is not None else None,
        "loaded": r is not None,
        "pinned": entry.id in scheduler.pinned,
        "keep_alive": entry.keep_alive,
        "running": dev.busy.get(entry.id, 0) if dev is not None else 0,
        "slots": scheduler.slots(entry),
        "queued": dev.queue.count(entry.id) if dev is not None else 0,
        "executor": entry.executor,
    }
    if dev is not None and dev.info.node is not None:
        out["node"] = dev.info.node
    if r is not None and dev is not None:
        out.update(footprint=r.footprint, load_seconds=round(r.load_seconds, 4))
        worker = dev.workers.get(entry.id)
        if worker is not None:
            out["pid"] = worker.pid
    return out


def in_line(scheduler: Scheduler, queued: list[WorkItem], now: float) -> list[dict]:
    """Queued items in the order they will be tried, each with its ``position`` (1: next) and
    ``estimated_wait``: seconds until it starts if the work queued ahead of it runs as long as
    its model's calls ran lately (a moving average, divided by the model's slots). A rough
    figure that leaves out the rest of what runs now and any load; None while a model ahead
    of it has not run yet."""
    out = []
    eta: float | None = 0.0
    for position, item in enumerate(queued, 1):
        seen = item.describe(now)
        seen["position"] = position
        seen["principal"] = item.principal  # whose turn (fair share); the admin sees it
        per_call = scheduler.dispatcher.run_seconds(item.model)
        if eta is not None and per_call is None:
            eta = None
        seen["estimated_wait"] = None if eta is None else round(eta, 3)
        if eta is not None and per_call is not None:
            eta += per_call / scheduler.slots(item.entry)
        out.append(seen)
    return out


def snapshot(scheduler: Scheduler) -> dict:
    """Devices with budget, used and free; resident models; queues; running items."""
    now, wall = time.monotonic(), time.time()
    devices = []
    for name, dev in scheduler.devices.items():
        ledger = dev.ledger
        resident = []
        for r in sorted(ledger.resident.values(), key=lambda r: r.loaded_at):
            entry = scheduler.registry.entries.get(r.model)
            worker = dev.workers.get(r.model)
            resident.append(
                {
                    "model": r.model,
                    "footprint": r.footprint,
                    "estimate": r.estimate,
                    "measured": r.measured,
                    "load_seconds": round(r.load_seconds, 4),
                    "loaded_at": r.loaded_wall,
                    "last_used": wall - (now - r.last_used),
                    "idle_seconds": round(now - r.last_used, 3),
                    "pinned": r.pinned,
                    "keep_alive": r.keep_alive if r.keep_alive is not None else entry.keep_alive if entry else None,
                    "running": dev.busy.get(r.model, 0),
                    "slots": scheduler.slots(entry) if entry else None,
                    "queued": dev.queue.count(r.model),
                    "evicting": r.evicting,
                    "executor": worker.executor if worker is not None else None,
                    "pid": worker.pid if worker is not None else None,
                }
            )
        queued = scheduler.policy.order(list(dev.queue), ledger.resident, now)
        node = {"node": dev.info.node} if dev.info.node is not None else {}
        devices.append(
            {
                "name": name,
                **node,
                "kind": dev.info.kind,
                "available": dev.info.available,
                "reason": dev.info.reason or None,
                "parallel": dev.parallel,
                "total": dev.info.total,
                "budget": ledger.budget,
                "headroom": dev.info.headroom,
                "used": ledger.used,
                "reserved": sum(ledger.reserved.values()),
                "free": None if ledger.budget is None else ledger.budget - ledger.held,
                "peak": ledger.peak,
                "loading": dev.loading,
                "resident": resident,
                "queue": {"depth": len(dev.queue), "by_model": dev.queue.depth()},
                "running": [i.describe(now) for i in dev.running.values()],
                "queued": in_line(scheduler, queued[:100], now),
            }
        )
    out = {
        "policy": scheduler.policy.name,
        "max_age": scheduler.config.scheduler.max_age,
        "auto_device": scheduler.auto_device,
        "pinned": sorted(scheduler.pinned),
        "devices": devices,
    }
    if scheduler.placement.enabled:
        out["nodes"] = scheduler.placement.describe()
    return out
