"""The llamacpp batch loop's order of service (:mod:`loom.plugins.llamacpp.preemption`): who gets a
free slot next, and which occupant a waiting sequence of a higher priority pauses."""

from __future__ import annotations

from dataclasses import dataclass

from loom.plugins.llamacpp.preemption import first, victim
from loom.sdk import Priority

INTERACTIVE, PIPELINE, BATCH = int(Priority.INTERACTIVE), int(Priority.PIPELINE), int(Priority.BATCH)


@dataclass
class Seq:
    name: str
    priority: int
    arrival: int
    cells: int = 0

    def held(self) -> int:
        return self.cells


def test_the_most_urgent_waiting_sequence_goes_first_then_the_earliest():
    waiting = [Seq("step", PIPELINE, 1), Seq("chat late", INTERACTIVE, 5), Seq("chat", INTERACTIVE, 3)]
    assert first(waiting).name == "chat"
    # A paused sequence keeps its arrival: it resumes before newer ones of its priority.
    assert first([Seq("new step", PIPELINE, 9), Seq("paused step", PIPELINE, 2)]).name == "paused step"
    assert first([]) is None


def test_only_an_occupant_of_a_lower_priority_gives_way():
    chat = Seq("chat", INTERACTIVE, 10)
    assert victim(chat, [Seq("other chat", INTERACTIVE, 1, cells=5)]) is None
    step = Seq("step", PIPELINE, 10)
    # Equals wait their turn: a step never pauses another step.
    assert victim(step, [Seq("a", PIPELINE, 1, cells=5), Seq("b", PIPELINE, 2, cells=5)]) is None
    assert victim(step, [Seq("a", PIPELINE, 1), Seq("chat", INTERACTIVE, 2), Seq("batch", BATCH, 3)]).name == "batch"
    assert victim(chat, []) is None


def test_the_least_urgent_then_the_smallest_state_then_the_latest_is_paused():
    chat = Seq("chat", INTERACTIVE, 10)
    occupants = [
        Seq("long step", PIPELINE, 1, cells=900),
        Seq("short step", PIPELINE, 2, cells=40),
        Seq("batch", BATCH, 3, cells=1500),
    ]
    assert victim(chat, occupants).name == "batch"  # the least urgent, whatever its size
    assert victim(chat, occupants[:2]).name == "short step"  # the cheapest to copy out and back
    ties = [Seq("older", PIPELINE, 1, cells=40), Seq("newer", PIPELINE, 2, cells=40)]
    assert victim(chat, ties).name == "newer"  # it has waited least
