"""Scheduling policies: which queued item goes next, which resident model to evict.

``affinity`` (the default): aged items first, then priority, then items whose model is resident,
then arrival; eviction by cost (least recently used, weighted by reload time, queued demand and
bytes freed); and a short anticipatory grace before evicting a model that was in use a moment ago,
so a client that sends its next request right after the last answer does not cause a swap. The
grace is only taken for models whose clients have been seen to come back that quickly.

Fair share (``affinity`` and ``priority``): within a priority, the work of different principals
(the callers' keys, the jobs' owners) takes turns, round-robin (:class:`FairShare` stamps each
item with its turn as it arrives). One user's 100-image batch then holds another's chat back by
at most one item of each principal ahead of it, however many it queued first. While several
principals have work queued, turns come before affinity (a principal's turn may cost a swap);
with one (the usual case: no keys) the order is what it was without them.

``fifo``: arrival order with head-of-line blocking and plain LRU eviction, a real option for anyone
who wants strict ordering. ``priority``: the same within each priority (interactive before pipeline
before batch): FIFO with priorities, the baseline the scheduler benchmark compares affinity with, so
that what it reports is what affinity adds to priorities.
"""

from __future__ import annotations

import abc
import enum
import heapq
import operator
from collections.abc import Mapping, Sequence

from .ledger import Residency
from .queues import WorkItem

GB = 2**30
#: Seconds added to every reload time: a swap costs more than the load itself (first call after a
#: load is slower, callers see the gap), and it keeps timing noise from outweighing recency.
RELOAD_FLOOR = 1.0
#: The grace applies to a model once this share (moving average, new observations weighted by
#: RETURN_WEIGHT) of its idle moments ended with a new request within the grace window.
RETURN_THRESHOLD = 0.25
RETURN_WEIGHT = 0.3
_PRIORITY_SEQ = operator.attrgetter("priority", "seq")
_MODEL, _ENQUEUED = operator.attrgetter("model"), operator.attrgetter("enqueued")
_PRINCIPAL = operator.attrgetter("principal")
_PRIORITY_TURN_SEQ = operator.attrgetter("priority", "turn", "seq")


class FairShare:
    """Turns for round-robin between principals (start-time fair queueing): an arriving item's
    turn is its principal's next one, but never earlier than the turn of the last item started
    at its priority, so a principal that was away does not come back with credit. Its first
    item comes right after the work started; ten queued at once take ten turns. State is per
    (principal, priority), principals being the metrics' bounded labels."""

    def __init__(self) -> None:
        self._now: dict[int, int] = {}  # per priority: the turn of the last item started
        self._next: dict[tuple[str, int], int] = {}  # per principal and priority: its next turn

    def stamp(self, item: WorkItem) -> None:
        priority = int(item.priority)
        key = (item.principal, priority)
        turn = max(self._now.get(priority, 0), self._next.get(key, 0))
        item.turn = turn
        self._next[key] = turn + 1

    def started(self, item: WorkItem) -> None:
        priority = int(item.priority)
        if item.turn > self._now.get(priority, 0):
            self._now[priority] = item.turn


def several_principals(items: Sequence[WorkItem]) -> bool:
    """Whether work of more than one principal is among ``items`` (turns then matter)."""
    return len(set(map(_PRINCIPAL, items))) > 1


class Decision(enum.Enum):
    START = "start"  # the item starts now
    LOADING = "loading"  # its model's load was started for it
    DONE = "done"  # it was settled without running (an explicit load, or failed)
    WAIT_MODEL = "wait_model"  # its own model is busy (slots full, loading, draining)
    WAIT_DEVICE = "wait_device"  # the device is busy with another model or memory is held
    WAIT_GRACE = "wait_grace"  # the policy holds the device for the model just used


class Policy(abc.ABC):
    name = "base"

    @abc.abstractmethod
    def order(self, items: Sequence[WorkItem], resident: Mapping[str, Residency], now: float) -> list[WorkItem]:
        """The items in the order to try them."""

    def best(self, items: Sequence[WorkItem], n: int, resident: Mapping[str, Residency], now: float) -> list[WorkItem]:
        """The first ``n`` of ``items`` (one model's queued runs, in arrival order) in the order
        :meth:`order` would put them: the only ones of that model a pass can start when it has
        ``n`` free slots."""
        return self.order(items, resident, now)[:n]

    @abc.abstractmethod
    def blocks(self, decision: Decision) -> bool:
        """Whether an item that cannot start keeps the items after it from starting."""

    @abc.abstractmethod
    def victims(
        self, candidates: Sequence[Residency], shortfall: float, demand: Mapping[str, int], now: float
    ) -> list[Residency] | None:
        """Residents to evict to free ``shortfall`` bytes (None when even all would not do)."""

    def grace(self, item: WorkItem, victims: Sequence[Residency], now: float) -> float:
        """Seconds to hold off evicting ``victims`` for ``item``; 0 means go ahead."""
        return 0.0

    # Optional notifications: a policy overrides the ones it keeps state for.
    def idle(self, model: str, now: float) -> None:  # noqa: B027
        """``model`` has nothing running or queued any more."""

    def arrived(self, model: str, now: float) -> None:  # noqa: B027
        """Work for ``model`` was queued."""


def _enough(ordered: Sequence[Residency], shortfall: float) -> list[Residency] | None:
    """Take from the front until ``shortfall`` is covered, then drop any that were not needed."""
    if shortfall <= 0:
        return []
    chosen, freed = [], 0
    for r in ordered:
        chosen.append(r)
        freed += r.footprint
        if freed >= shortfall:
            break
    else:
        return None
    for r in list(chosen[:-1])[::-1]:  # a big one late in the list may make earlier ones moot
        if freed - r.footprint >= shortfall:
            chosen.remove(r)
            freed -= r.footprint
    return chosen


class AffinityPolicy(Policy):
    name = "affinity"

    def __init__(self, max_age: float = 30.0, max_grace: float = 0.05, grace_share: float = 0.25) -> None:
        self.max_age = max_age
        self.max_grace = max_grace  # seconds, at most
        self.grace_share = grace_share  # of the victim's reload time
        self._idle_at: dict[str, float] = {}
        #: per model, a moving average of "its next request came within max_grace of it going
        #: idle": the grace is only worth waiting where clients are seen to come back that fast
        self._returns: dict[str, float] = {}

    def order(self, items, resident, now):
        if len(items) < 2:
            return list(items)
        fair = several_principals(items)
        if not fair and len(set(map(_MODEL, items))) == 1 and now - min(map(_ENQUEUED, items)) < self.max_age:
            # The common pass, one model's runs and none aged: residency is the same for all,
            # so the order is (priority, arrival), sorted without a Python key call per item.
            return sorted(items, key=_PRIORITY_SEQ)
        warm: dict[str, int] = {}  # per model, looked up once a pass (the queue may hold many)

        def key(item: WorkItem):
            if item.age(now) >= self.max_age:
                return (0, 0, 0, 0, item.seq)
            m = item.model
            cold = warm.get(m)
            if cold is None:
                r = resident.get(m)
                cold = warm[m] = 0 if r is not None and not r.evicting else 1
            # Fair share comes before affinity: a principal's first turn may cost a swap.
            return (1, int(item.priority), item.turn if fair else 0, cold, item.seq)

        return sorted(items, key=key)

    def best(self, items, n, resident, now):
        if now - items[0].enqueued >= self.max_age or several_principals(items):
            # Some have aged (the first is the oldest), or principals take turns.
            return self.order(items, resident, now)[:n]
        # One model, none aged: (priority, arrival), picked without sorting the rest.
        return [min(items, key=_PRIORITY_SEQ)] if n == 1 else heapq.nsmallest(n, items, key=_PRIORITY_SEQ)

    def blocks(self, decision):
        return decision in (Decision.WAIT_DEVICE, Decision.WAIT_GRACE)

    def keep_value(self, r: Residency, demand: int, now: float) -> float:
        """What keeping ``r`` is worth per GiB: reload time x recency x (1 + queued demand)."""
        idle = max(0.0, now - r.last_used)
        reload = r.load_seconds + RELOAD_FLOOR
        return reload * (1 + demand) / ((idle + 1.0) * max(r.footprint / GB, 1 / 1024))

    def victims(self, candidates, shortfall, demand, now):
        ordered = sorted(candidates, key=lambda r: (self.keep_value(r, demand.get(r.model, 0), now), r.last_used))
        return _enough(ordered, shortfall)

    def grace(self, item, victims, now):
        wait = 0.0
        for v in victims:
            if int(item.priority) < v.last_priority or item.age(now) >= self.max_age:
                return 0.0  # never delay more urgent (or starving) work for this
            if self._returns.get(v.model, 0.0) < RETURN_THRESHOLD:
                continue
            window = min(self.max_grace, self.grace_share * v.load_seconds)
            wait = max(wait, v.last_used + window - now)
        return max(0.0, wait)

    def idle(self, model, now):
        self._idle_at[model] = now

    def arrived(self, model, now):
        since = self._idle_at.pop(model, None)
        if since is not None:
            came_back = 1.0 if now - since <= self.max_grace else 0.0
            before = self._returns.get(model, 0.0)
            self._returns[model] = before + RETURN_WEIGHT * (came_back - before)


class FifoPolicy(Policy):
    name = "fifo"

    def order(self, items, resident, now):
        return sorted(items, key=lambda item: item.seq)

    def blocks(self, decision):
        return True  # strict head-of-line

    def victims(self, candidates, shortfall, demand, now):
        return _enough(sorted(candidates, key=lambda r: r.last_used), shortfall)


class PriorityFifoPolicy(FifoPolicy):
    name = "priority"

    def order(self, items, resident, now):
        return sorted(items, key=_PRIORITY_TURN_SEQ if several_principals(items) else _PRIORITY_SEQ)


def make_policy(policy: str | Policy, max_age: float) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if policy == "affinity":
        return AffinityPolicy(max_age=max_age)
    if policy == "fifo":
        return FifoPolicy()
    if policy == "priority":
        return PriorityFifoPolicy()
    raise ValueError(f"unknown scheduling policy {policy!r} (choose 'affinity', 'priority' or 'fifo')")
