"""Candidates and their lineage: who came from whom, with what prompts, critique, scores and verdicts.

Every candidate is reported to the daemon as a ``lineage`` event (``ctx.emit``) each time it
gains something: its prompts (before any risky call, as the seed's MetadataTracker recorded an
attempt first), its image, its scores, the judge's verdicts, whether ranking kept it, or the
error that made it fail. The daemon merges these by id, serves the tree at
``GET /v1/jobs/{id}/lineage``; :mod:`.seedmeta` writes the seed's records into ``metadata.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The fields a round of work may change, kept as the round's durable outcome (see pipeline.py).
STATE_FIELDS = (
    "what",
    "how",
    "combined",
    "critique",
    "critique_log",
    "description",
    "description_error",
    "image",
    "image_seed",
    "clip",
    "aesthetic",
    "score",
    "status",
    "error",
)


@dataclass
class Candidate:
    iteration: int
    index: int  # position within its iteration (the seed's candidateId)
    parent: str | None = None
    dimension: str | None = None  # which prompts this candidate's refinement rewrote
    what: str = ""
    how: str = ""
    combined: str = ""
    #: The critiques of the parent that this candidate's refinement followed, by dimension.
    critique: dict[str, dict[str, str]] | None = None
    #: The critiques written about this candidate as a parent: iteration -> by dimension, or
    #: {"error": ...} when the critique failed (its children then fail too).
    critique_log: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the describer said about this candidate's image (when it was critiqued as a parent).
    description: str | None = None
    description_error: str | None = None
    image: str | None = None  # relative path under the data dir
    image_seed: int | None = None
    clip: float | None = None
    aesthetic: float | None = None
    score: float | None = None
    status: str = "prompted"  # prompted -> generated -> scored, or failed
    #: Why the candidate failed: {"stage", "type", "code", "message"}.
    error: dict[str, Any] | None = None
    kept_in: list[int] = field(default_factory=list)
    #: Its place in the last ranking it took part in, and that ranking's iteration.
    rank: int | None = None
    ranked_in: int | None = None
    global_rank: int | None = None
    global_rank_note: str | None = None
    #: Pairwise verdicts this candidate took part in (see :meth:`record_comparison`).
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    winner: bool = False

    @property
    def id(self) -> str:
        return f"i{self.iteration}c{self.index}"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def fail(self, stage: str, error: dict[str, Any]) -> None:
        self.status = "failed"
        self.error = {"stage": stage, **error}

    def state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in STATE_FIELDS}

    def restore(self, state: dict[str, Any]) -> None:
        for name in STATE_FIELDS:
            if name in state:
                setattr(self, name, state[name])

    def record_comparison(self, iteration: int, opponent: str, won: bool, verdict: dict[str, Any]) -> None:
        """One verdict from this candidate's side (the seed's per-candidate ``comparisons``)."""
        mine, theirs = ("a", "b") if verdict["a"] == self.id else ("b", "a")
        ranks = verdict.get("ranks") or {}
        self.comparisons.append(
            {
                "iteration": iteration,
                "opponent": opponent,
                "result": "win" if won else "loss",
                "decided_by": verdict["decided_by"],
                "reason": verdict.get("reason", ""),
                "my_ranks": ranks.get(mine),
                "opponent_ranks": ranks.get(theirs),
            }
        )

    def judged(self) -> str:
        """The judge's reasons about this candidate, for its critique (latest first, short)."""
        said = [
            f"{c['result']} against {c['opponent']}: {c['reason']}"
            for c in reversed(self.comparisons)
            if c["decided_by"] == "judge" and c.get("reason")
        ]
        return " | ".join(said[:4])

    def node(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "iteration": self.iteration,
            "index": self.index,
            "dimension": self.dimension,
            "what": self.what,
            "how": self.how,
            "combined": self.combined,
            "critique": self.critique,
            "description": self.description,
            "image": self.image,
            "image_url": f"/v1/files/{self.image}" if self.image else None,
            "clip": self.clip,
            "aesthetic": self.aesthetic,
            "alignment": None if self.clip is None else round(100.0 * self.clip, 4),
            "score": self.score,
            "status": self.status,
            "error": self.error,
            "kept_in": list(self.kept_in),
            "rank": self.rank,
            "ranked_in": self.ranked_in,
            "global_rank": self.global_rank,
            "comparisons": list(self.comparisons),
            "winner": self.winner,
        }
