"""The beam search's parameters, decoded strictly from ``POST /v1/pipelines/beam_search``."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from loom.sdk.storykit.params import Side
from loom.sdk.types import Steps


class BeamSearchParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Beam search over image prompts (seed 004): N candidates an iteration, the best M kept."""

    prompt: Annotated[str, Meta(min_length=1, max_length=2000, description="what the user wants to see")]
    #: N: candidates generated per iteration.
    beam_width: Annotated[int, Meta(ge=1, le=16, description="N: candidates per iteration")] = 4
    #: M: candidates kept after each ranking (the parents of the next iteration).
    keep_top: Annotated[int, Meta(ge=1, le=16, description="M: kept after each ranking (<= N)")] = 2
    #: Iterations in all, counting iteration 0 (the expansion).
    iterations: Annotated[int, Meta(ge=1, le=10, description="iterations in all, counting iteration 0")] = 3
    #: score = alpha * clip + (1 - alpha) * aesthetic, both on 0..100 (see ranking.py).
    alpha: Annotated[float, Meta(ge=0.0, le=1.0, description="weight of prompt alignment (CLIP)")] = 0.7
    width: Side = 512
    height: Side = 512
    steps: Steps | None = None
    negative_prompt: str | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] = 0.7
    #: Base seed for LLM sampling and images; None derives one from the job id.
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    #: Models for the three roles; None uses the config's routes ([routes] chat / image / vision).
    llm_model: str | None = None
    image_model: str | None = None
    vision_model: str | None = None
    #: Which prompt each refinement rewrites: the seed alternates (odd iterations WHAT, even HOW);
    #: "both" rewrites both every time.
    refine: Literal["alternate", "both"] = "alternate"
    #: "phased" submits an iteration's work phase by phase (all LLM calls, then all images, then
    #: all evaluations); "sequential" submits one call at a time in arrival order, candidate by
    #: candidate (the baseline the benchmark compares against).
    schedule: Literal["phased", "sequential"] = "phased"
    max_tokens: Annotated[int, Meta(ge=16, le=2048, description="token limit of each LLM call")] = 160

    def __post_init__(self) -> None:
        if self.keep_top > self.beam_width:
            raise ValueError(f"keep_top ({self.keep_top}) cannot exceed beam_width ({self.beam_width})")
