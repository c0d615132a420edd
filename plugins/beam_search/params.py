"""The beam search's parameters, decoded strictly from ``POST /v1/pipelines/beam_search``."""

from __future__ import annotations

from typing import Annotated, Literal

from loom.sdk.storykit.params import Side
from loom.sdk.types import Steps
from msgspec import Meta, Struct


class BeamSearchParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Beam search over image prompts (seed 004): N candidates an iteration, the best M kept."""

    prompt: Annotated[str, Meta(min_length=1, max_length=2000, description="what the user wants to see")]
    #: N: candidates generated at iteration 0; later iterations make floor(N/M) children per parent.
    beam_width: Annotated[int, Meta(ge=1, le=16, description="N: candidates per iteration")] = 4
    #: M: candidates kept after each ranking (the parents of the next iteration).
    keep_top: Annotated[int, Meta(ge=1, le=16, description="M: kept after each ranking (<= N)")] = 2
    #: Iterations in all, counting iteration 0 (the expansion).
    iterations: Annotated[int, Meta(ge=1, le=10, description="iterations in all, counting iteration 0")] = 3
    #: score = alpha * 100*clip + (1 - alpha) * 10*aesthetic, on 0..100 (see ranking.py); in
    #: pairwise ranking also the judge's weight of alignment over aesthetics.
    alpha: Annotated[float, Meta(ge=0.0, le=1.0, description="weight of prompt alignment (CLIP)")] = 0.7
    #: "score": rank by score. "pairwise": a judge compares two images at a time (the seed's
    #: ImageRanker); scores still decide a pair the judge cannot.
    ranking: Literal["score", "pairwise"] = "score"
    #: Who compares images in pairwise ranking: "model" (a vision chat model, ``judge_model``) or
    #: "person" (choices made on the web UI's evaluation page, /ui/evaluate).
    judge: Annotated[
        str, Meta(description="pairwise judge: 'model' (a vision chat model) or 'person' (/ui/evaluate)")
    ] = "model"
    #: With judge "person": how long the job waits for each choice before the scores decide the pair.
    judge_timeout: Annotated[
        float, Meta(ge=1.0, le=86400.0, description="seconds a person has for each pair (judge 'person')")
    ] = 300.0
    #: CLIP is measured against the user's prompt ("prompt") or each candidate's combined prompt.
    score_against: Literal["prompt", "combined"] = "prompt"
    width: Side = 512
    height: Side = 512
    steps: Steps | None = None
    negative_prompt: str | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] = 0.7
    #: Base seed for LLM sampling and images; None derives one from the job id.
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    #: Models for the roles; None uses the config's routes: [routes] chat, image, score,
    #: describe, judge (the last three fall back to [routes] vision). ``vision_model`` names one
    #: model for the scorer, the describer and the judge at once (one that does all three).
    llm_model: str | None = None
    image_model: str | None = None
    scorer_model: str | None = None
    describer_model: str | None = None
    judge_model: str | None = None
    vision_model: str | None = None
    #: Which prompts each refinement rewrites: "both" (each parent gets a WHAT and a HOW critique,
    #: and its children rewrite both) or "alternate" (the seed's demo: odd iterations WHAT, even HOW).
    refine: Literal["both", "alternate"] = "both"
    #: "phased" submits an iteration's work phase by phase (descriptions, then all LLM calls, then
    #: all images, then all scores); "sequential" one call at a time, candidate by candidate (the
    #: baseline the benchmark compares against).
    schedule: Literal["phased", "sequential"] = "phased"
    max_tokens: Annotated[int, Meta(ge=16, le=2048, description="token limit of each LLM call")] = 160

    def __post_init__(self) -> None:
        from .judge import JUDGES

        if self.keep_top > self.beam_width:
            raise ValueError(f"keep_top ({self.keep_top}) cannot exceed beam_width ({self.beam_width})")
        if self.judge not in JUDGES:
            raise ValueError(f"judge must be one of {', '.join(sorted(JUDGES))}, got {self.judge!r}")
