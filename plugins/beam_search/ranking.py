"""Scoring and ranking candidates, and how the next iteration's children are shared out.

Score (the seed's ``calculateTotalScore``): both parts on a 0-100 scale, then weighted,

    alignment = 100 * clip            (a vision provider's CLIP similarity is 0..1)
    aesthetic = 10 * aesthetic_score  (aesthetic predictors answer 0..10; the seed multiplies by 10)
    score     = alpha * alignment + (1 - alpha) * aesthetic        -> 0..100

CLIP is measured against the user's original prompt, not the candidate's own combined prompt,
so every candidate is judged against the same intent and scores are comparable across the beam.

Ranking is comparative, as in the seed's refinement loop: the parents kept by the previous
iteration compete with their children, so a parent that beats every child survives. Ties break
on alignment, then on the older candidate, then on candidate order, so ranking is deterministic
(and a resumed job ranks exactly as the first run did).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from loom.sdk.protocols import VisionScores


class Scored(Protocol):
    id: str
    iteration: int
    index: int
    clip: float | None
    score: float | None


def total_score(clip: float, aesthetic: float, alpha: float) -> float:
    # The same formula /v1/vision/score answers with, kept in one place in the SDK.
    return VisionScores(clip=clip, aesthetic=aesthetic).combined(alpha)


def rank_key(c: Scored) -> tuple:
    return (-(c.score or 0.0), -(c.clip or 0.0), c.iteration, c.index)


def rank(pool: Iterable[Scored]) -> list[Scored]:
    """Best first."""
    return sorted(pool, key=rank_key)


def children_per_parent(n: int, parents: int) -> list[int]:
    """Share N children among the kept parents, best parent first.

    The seed gives every parent floor(N/M) children; here the remainder goes to the best parents
    too, so every iteration has exactly N candidates even when M does not divide N.
    """
    if parents <= 0:
        return []
    base, extra = divmod(n, parents)
    return [base + (1 if i < extra else 0) for i in range(parents)]


def dimensions(iteration: int, mode: str) -> tuple[str, ...]:
    """Which prompts iteration ``iteration`` (>= 1) refines: the seed alternates, odd WHAT."""
    if mode == "both":
        return ("what", "how")
    return ("what",) if iteration % 2 == 1 else ("how",)
