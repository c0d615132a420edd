"""Work items and the per-device queue they wait in.

The queue only holds items and counts them per model; which item goes next is the policy's call
(:mod:`.policy`), and what may start is decided by the scheduler core.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.sdk.protocols import RunContext

from ..models import ModelEntry
from ..workers.channel import Channel

#: The id of the work item most recently submitted from this context (the API's response header;
#: for an n-image call split into items, the first item's).
current_work_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("loom_work_id", default=None)
#: The place in line of that item when it was queued (0: a slot was free for it): the
#: ``x-loom-queue-position`` response header.
current_queue_position: contextvars.ContextVar[int] = contextvars.ContextVar("loom_queue_position", default=0)
#: Who the work this context submits is for (the caller's principal; a job's owner), for the
#: per-principal metrics. Set by the API for each request that carries a key.
current_principal: contextvars.ContextVar[str] = contextvars.ContextVar("loom_principal", default="anonymous")


class Priority(enum.IntEnum):
    URGENT = -1  # OpenAI's service_tier "priority"
    INTERACTIVE = 0  # the /v1 endpoints
    PIPELINE = 1  # steps of a pipeline job
    BATCH = 2


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


def new_id() -> str:
    # Not a secret (cancelling by id takes an admin key), so no system call for it: one per request.
    return f"wk_{random.getrandbits(48):012x}"


def fail(fut: asyncio.Future, error: BaseException) -> None:
    """Settle ``fut`` with ``error`` unless it is settled (a caller that went away may have
    cancelled it), marked as retrieved: the caller may be gone. Marked here rather than by a done
    callback on every future, which would cost a turn of the loop per request."""
    if not fut.done():
        fut.set_exception(error)
        fut.exception()


def succeed(fut: asyncio.Future, value: Any) -> None:
    """Settle ``fut`` with ``value`` unless a caller that went away cancelled it."""
    if not fut.done():
        fut.set_result(value)


@dataclass(eq=False)
class WorkItem:
    """One provider call: queued on its model's device, then run, then done exactly once."""

    entry: ModelEntry
    device: str
    priority: Priority
    call: Any  # a loom.sdk.calls.Call, or (in process) a function of (provider, ctx)
    ctx: RunContext
    seq: int
    stream: bool = False
    #: With ``stream``: the chunks are kept in a list that becomes the result (a caller that
    #: wants the whole answer), not handed one by one through ``chunks``.
    collect: bool = False
    #: "run" for provider calls; "load" for an explicit load (completes once the model is resident)
    kind: str = "run"
    #: Its place among its model's work waiting for a slot when it arrived (0: none waited).
    position: int = 0
    #: Whom it is for, as the per-principal metrics label it.
    principal: str = "anonymous"
    #: Its principal's turn at its priority (fair share: :class:`~.policy.FairShare`).
    turn: int = 0
    #: Counts the call's tokens against its principal's quota (``quotas.current_meter``), if any.
    meter: Callable[[Any], None] | None = None
    id: str = field(default_factory=new_id)
    enqueued: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    state: State = State.QUEUED
    outcome: str | None = None  # "finished", "failed", "cancelled"
    yielded: bool = False  # a stream produced its first chunk (no OOM retry after that)
    started: asyncio.Future = field(init=False)
    done: asyncio.Future = field(init=False)
    chunks: Channel | None = field(init=False, default=None)
    #: Its spans (:class:`loom.daemon.tracing.work.WorkTrace`) when traces are on.
    trace: Any = field(init=False, default=None)
    #: ``entry.id``, kept as a plain attribute: a dispatch pass reads it for every queued item.
    model: str = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.entry.id
        loop = asyncio.get_running_loop()
        self.started = loop.create_future()
        self.done = loop.create_future()
        if self.stream and not self.collect:
            self.chunks = Channel()

    @property
    def internal(self) -> bool:
        return self.kind != "run"

    def age(self, now: float) -> float:
        return now - self.enqueued

    def describe(self, now: float) -> dict:
        out = {
            "id": self.id,
            "model": self.model,
            "device": self.device,
            "priority": self.priority.name.lower(),
            "kind": "stream" if self.stream else self.kind,
            "state": self.state.value,
            "waited": round((self.started_at or now) - self.enqueued, 4),
        }
        if self.started_at is not None:
            out["running_for"] = round(now - self.started_at, 4)
        return out


class DeviceQueue:
    """Items waiting for one device, in arrival order, with per-model counts for admission and the
    runs kept by model too (a dispatch pass skips a model whose slots are all taken without
    looking at its items)."""

    def __init__(self) -> None:
        self._items: dict[str, WorkItem] = {}
        self.per_model: Counter[str] = Counter()
        self._runs: dict[str, dict[str, WorkItem]] = {}
        self._internal: dict[str, WorkItem] = {}

    def push(self, item: WorkItem) -> None:
        self._items[item.id] = item
        self.per_model[item.model] += 1
        if item.internal:
            self._internal[item.id] = item
        else:
            self._runs.setdefault(item.model, {})[item.id] = item

    def remove(self, item: WorkItem) -> bool:
        if self._items.pop(item.id, None) is None:
            return False
        self.per_model[item.model] -= 1
        if self.per_model[item.model] <= 0:
            del self.per_model[item.model]
        if item.internal:
            del self._internal[item.id]
        else:
            runs = self._runs[item.model]
            del runs[item.id]
            if not runs:
                del self._runs[item.model]
        return True

    def runs_by_model(self) -> list[tuple[str, Mapping[str, WorkItem]]]:
        """(model, its queued runs by id in arrival order) for each model with runs queued; the
        mappings are live, so read them before the queue changes."""
        return list(self._runs.items())

    def internal(self) -> list[WorkItem]:
        """The queued items that are not runs (explicit loads)."""
        return list(self._internal.values())

    def count(self, model: str) -> int:
        return self.per_model.get(model, 0)

    def __contains__(self, item: WorkItem) -> bool:
        return item.id in self._items

    def __iter__(self) -> Iterator[WorkItem]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def depth(self) -> dict[str, dict[str, int]]:
        """Queued items by model, then by priority name."""
        out: dict[str, dict[str, int]] = {}
        for item in self._items.values():
            by_priority = out.setdefault(item.model, {})
            name = item.priority.name.lower()
            by_priority[name] = by_priority.get(name, 0) + 1
        return out
