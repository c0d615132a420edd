"""Candidates and their lineage: who came from whom, with what prompts, critique and scores.

Every candidate is reported to the daemon as a ``lineage`` event (``ctx.emit``) each time it
gains something: its prompts (before any risky call, as the seed's MetadataTracker recorded an
attempt first), its image, its scores, then whether ranking kept it. The daemon merges these by
id, serves the tree at ``GET /v1/jobs/{id}/lineage`` and writes it into ``metadata.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    iteration: int
    index: int  # position within its iteration
    parent: str | None = None
    dimension: str | None = None  # which prompt this candidate's refinement rewrote
    what: str = ""
    how: str = ""
    combined: str = ""
    #: The critique of the parent that this candidate's refinement followed.
    critique: dict[str, str] | None = None
    #: What the vision model said about this candidate's image (when it was critiqued as a parent).
    description: str | None = None
    image: str | None = None  # relative path under the data dir
    clip: float | None = None
    aesthetic: float | None = None
    score: float | None = None
    status: str = "prompted"  # prompted -> generated -> scored
    kept_in: list[int] = field(default_factory=list)
    rank: int | None = None
    winner: bool = False

    @property
    def id(self) -> str:
        return f"i{self.iteration}c{self.index}"

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
            "kept_in": list(self.kept_in),
            "rank": self.rank,
            "winner": self.winner,
        }
