"""Who waits and who gives up a slot: the batch loop's order of service, apart from its mechanics.

Each sequence carries its call's priority (``RunContext.priority``: 0 a client's request, 1 a
pipeline's step, 2 batch work; lower is more urgent). A free slot goes to the most urgent waiting
sequence, the earliest arrived among equals, so a paused sequence (which keeps its arrival) resumes
before the newer ones of its priority. When no slot is free, a waiting sequence may take one from
an occupant of lower priority: :func:`victim` names it, and the batch loop (:mod:`.batching`) pauses
it (its KV state copied out to host RAM) until a slot frees.

Nothing here imports llama_cpp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class Waiting(Protocol):
    #: Lower is more urgent (``loom.sdk.Priority``).
    priority: int
    #: When it was submitted (a counter): earlier first among equals.
    arrival: int


class Occupant(Waiting, Protocol):
    #: The cells its state fills: what pausing it copies out and resuming copies back.
    def held(self) -> int: ...


WaitingT = TypeVar("WaitingT", bound=Waiting)
OccupantT = TypeVar("OccupantT", bound=Occupant)


def first(waiting: Iterable[WaitingT]) -> WaitingT | None:
    """The waiting sequence to serve next: the most urgent, then the earliest arrived."""
    return min(waiting, key=lambda w: (w.priority, w.arrival), default=None)


def victim(newcomer: Waiting, occupants: Iterable[OccupantT]) -> OccupantT | None:
    """The occupant to pause so that ``newcomer`` runs now, or None when none may be paused.

    Only one of strictly lower priority gives way (equals wait their turn, so a paused sequence is
    never paused for its peers). Among those: the least urgent; then the one with the smallest
    state (the cheapest to copy out and back in); then the latest arrived (it waited least)."""
    candidates = [o for o in occupants if o.priority > newcomer.priority]
    return min(candidates, key=lambda o: (-o.priority, o.held(), -o.arrival), default=None)
