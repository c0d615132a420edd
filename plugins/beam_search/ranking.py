"""Scoring and ranking candidates, the seed's global ranks, and how children are shared out.

Score (the seed's ``calculateTotalScore``): both parts on a 0-100 scale, then weighted,

    alignment = 100 * clip            (a scorer's CLIP similarity is 0..1)
    aesthetic = 10 * aesthetic_score  (aesthetic predictors answer 0..10; the seed multiplies by 10)
    score     = alpha * alignment + (1 - alpha) * aesthetic        -> 0..100

CLIP is measured against the user's prompt by default (``score_against = "prompt"``), so every
candidate is judged against the same intent and scores compare across the beam; "combined"
measures each image against the prompt it was made from instead.

Two rankings (``ranking``):

- ``"score"``: by score, best first; ties break on alignment, then on the older candidate, then
  on candidate order, so ranking is deterministic (and a resumed job ranks as the first did).
- ``"pairwise"`` (the seed's ImageRanker): a judge compares two images at a time. The pool is
  sorted by merge sort, which makes at most ``merge_sort_bound(n)`` = n*ceil(log2 n) - 2^ceil(log2 n)
  + 1 comparisons for n items. In a refinement iteration the parents' order is already known
  from the previous ranking, so only the children are sorted and then merged with the parents:
  at most ``merge_sort_bound(c) + (m + c - 1)`` comparisons for m parents and c children (see
  :func:`comparison_bound`). For N=4, M=2 that is 5 at iteration 0 and 10 after, where the seed's
  all-pairs ranking asks 6 and 15. A pair the judge cannot decide is ordered by score.

Global ranks (the seed's ``computeGlobalRanks``): iteration 0 ranks 1..N; in a later iteration,
the parents and the children ranked above the worst parent get consecutive ranks, children below
it are tied at the floor rank N, and candidates dropped earlier keep their rank.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from loom.sdk.protocols import VisionScores

T = TypeVar("T")
#: ``better(a, b)``: True when ``a`` ranks above ``b``.
Better = Callable[[T, T], Awaitable[bool]]


class Scored(Protocol):
    """What ranking reads of a candidate (read-only: a candidate's ``id`` is a property)."""

    @property
    def id(self) -> str: ...
    @property
    def iteration(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def clip(self) -> float | None: ...
    @property
    def score(self) -> float | None: ...


S = TypeVar("S", bound=Scored)


def total_score(clip: float, aesthetic: float, alpha: float) -> float:
    # The same formula /v1/vision/score answers with, kept in one place in the SDK.
    return VisionScores(clip=clip, aesthetic=aesthetic).combined(alpha)


def rank_key(c: Scored) -> tuple:
    return (-(c.score or 0.0), -(c.clip or 0.0), c.iteration, c.index)


def rank(pool: Iterable[S]) -> list[S]:
    """Best first, by score."""
    return sorted(pool, key=rank_key)


# --- pairwise --------------------------------------------------------------------------------


def merge_sort_bound(n: int) -> int:
    """The most comparisons a top-down merge sort makes on ``n`` items."""
    if n <= 1:
        return 0
    k = math.ceil(math.log2(n))
    return n * k - 2**k + 1


def comparison_bound(parents: int, children: int) -> int:
    """The most comparisons one pairwise ranking makes: the children sorted, then merged with
    the parents, whose order the previous ranking already settled (iteration 0 has no parents)."""
    merge = parents + children - 1 if parents and children else 0
    return merge_sort_bound(children) + merge


async def merge(left: Sequence[T], right: Sequence[T], better: Better) -> list[T]:
    """Merge two lists, each best first, with at most ``len(left) + len(right) - 1`` comparisons."""
    out: list[T] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if await better(right[j], left[i]):
            out.append(right[j])
            j += 1
        else:
            out.append(left[i])
            i += 1
    return [*out, *left[i:], *right[j:]]


async def merge_sort(items: Sequence[T], better: Better) -> list[T]:
    """Best first, with at most ``merge_sort_bound(len(items))`` comparisons. Comparisons run
    one at a time in a fixed order, so a resumed job asks the same questions in the same order."""
    if len(items) <= 1:
        return list(items)
    mid = len(items) // 2
    return await merge(await merge_sort(items[:mid], better), await merge_sort(items[mid:], better), better)


async def rank_pairwise(parents: Sequence[T], children: Sequence[T], better: Better) -> list[T]:
    """The pool, best first: the children sorted, then merged with the parents (best first)."""
    return await merge(list(parents), await merge_sort(children, better), better)


# --- the seed's global ranks and children per parent -------------------------------------------


def global_ranks(ranked: Sequence[str], parents: Iterable[str], floor: int) -> dict[str, tuple[int, str | None]]:
    """id -> (global rank, note) for one iteration's ranking (ids best first), as the seed's
    ``computeGlobalRanks``: with no parents, 1..n; else the parents and the children above the
    worst parent rank consecutively and the children below it tie at ``floor``."""
    parent_ids = set(parents)
    worst = max((i for i, cid in enumerate(ranked) if cid in parent_ids), default=-1)
    if worst < 0:
        return {cid: (i + 1, None) for i, cid in enumerate(ranked)}
    out: dict[str, tuple[int, str | None]] = {}
    current = 1
    for i, cid in enumerate(ranked):
        if i > worst and cid not in parent_ids:
            out[cid] = (floor, "tied_at_floor")
        else:
            out[cid] = (current, None)
            current += 1
    return out


def children_per_parent(n: int, keep: int) -> int:
    """The seed's expansion ratio: every kept parent gets floor(N/M) children (at least one), so
    an iteration has M * floor(N/M) children, N when M divides N."""
    return max(1, n // max(1, keep))


def dimensions(iteration: int, mode: str) -> tuple[str, ...]:
    """Which prompts iteration ``iteration`` (>= 1) refines: both by default; "alternate" is the
    seed's demo schedule (odd iterations WHAT, even HOW)."""
    if mode == "both":
        return ("what", "how")
    return ("what",) if iteration % 2 == 1 else ("how",)
