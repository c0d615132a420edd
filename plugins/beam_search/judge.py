"""Who decides which of two images is better, for ``ranking = "pairwise"`` (the seed's ImageRanker).

The interface is small on purpose, so that other judges (a person choosing on a web page, an
ensemble) can stand in for the model judge:

    class Judge(Protocol):
        name: str
        async def compare(self, prompt: str, a: Entrant, b: Entrant) -> Verdict: ...

- ``prompt`` is what the images should show: the user's prompt.
- ``a`` and ``b`` are the two candidates: their lineage ``id``, their ``image`` (an artefact path,
  served at ``/v1/files/<image>``; ``ctx.read_artifact(image)`` gives the bytes) and the
  ``combined`` prompt each was made from.
- The answer is a :class:`Verdict`: ``winner`` "a", "b", or None when the judge cannot decide
  (then the pipeline orders the pair by score), a ``reason`` in words, and optionally the seed's
  per-factor ``ranks`` (1 = better) for "alignment" and "aesthetics".

The pipeline calls ``compare`` once per pair, one pair at a time, and keeps each verdict as a
durable step: a resumed job never asks again, and the reasons go into the lineage. A judge may
take as long as it needs (a person may take minutes). Raising a Loom error counts as undecided
for that pair (its message is kept as the reason); cancellation and authentication errors stop
the job.

Judges are made by the factories in :data:`JUDGES`, chosen with the ``judge`` parameter:
``JUDGES[name](ctx, params)`` returns the judge for one run of the pipeline.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from loom.sdk.errors import UnsupportedParameter
from loom.sdk.pipelines import PipelineContext
from msgspec import Struct

from . import prompts

if TYPE_CHECKING:
    from .params import BeamSearchParams


class Entrant(Struct, frozen=True, kw_only=True):
    """One side of a comparison."""

    id: str  # the candidate's lineage id, e.g. "i1c2"
    image: str  # artefact path of its PNG (GET /v1/files/<image>)
    combined: str = ""  # the prompt the image was made from


class Verdict(Struct, frozen=True, kw_only=True):
    """What a judge decided about one pair."""

    winner: Literal["a", "b"] | None  # None: undecided (the pair is then ordered by score)
    reason: str = ""
    #: The seed's per-factor ranks, 1 (better) or 2: {"a": {"alignment": 1, "aesthetics": 2}, "b": ...}.
    ranks: dict[str, dict[str, float]] | None = None


class Judge(Protocol):
    #: Shown in the lineage next to each verdict, e.g. "model:llava-7b".
    name: str

    async def compare(self, prompt: str, a: Entrant, b: Entrant) -> Verdict:
        """Which image shows ``prompt`` better."""
        ...


JudgeFactory = Callable[[PipelineContext, "BeamSearchParams"], Judge]


class ModelJudge:
    """A vision-capable chat model shown both images (the seed's ``compareTwo``).

    It ranks each image 1 or 2 on alignment and aesthetics; the winner is the lower
    ``alpha * alignment + (1 - alpha) * aesthetics`` (the seed's combined rank), else the
    ``winner`` it named; "tie" or an answer that cannot be read is undecided. The order the two
    are shown in is swapped for half the pairs (chosen by a hash of the ids, so a resumed job
    shows them the same way) to even out a model's preference for the first or second image.
    """

    def __init__(self, ctx: PipelineContext, model: str, alpha: float, max_tokens: int) -> None:
        self.ctx, self.model, self.alpha, self.max_tokens = ctx, model, alpha, max_tokens
        self.name = f"model:{model}"

    @classmethod
    def create(cls, ctx: PipelineContext, params: BeamSearchParams) -> ModelJudge:
        model = ctx.model_for("judge", params.judge_model or params.vision_model)
        return cls(ctx, model, params.alpha, max(params.max_tokens, 96))

    async def compare(self, prompt: str, a: Entrant, b: Entrant) -> Verdict:
        swap = hashlib.sha256(f"{a.id}|{b.id}".encode()).digest()[0] % 2 == 1
        first, second = (b, a) if swap else (a, b)
        messages = prompts.judge_messages(prompt, _data_uri(self.ctx, first.image), _data_uri(self.ctx, second.image))
        kw: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0.0}
        try:
            text = await self.ctx.chat(
                self.model, messages, response_format=prompts.response_format("verdict", prompts.VERDICT_SCHEMA), **kw
            )
        except UnsupportedParameter:
            text = await self.ctx.chat(self.model, messages, **kw)
        parsed = prompts.parse_verdict(text, self.alpha)
        if parsed is None:
            return Verdict(winner=None, reason=f"the judge's answer could not be read: {text[:160]!r}")
        shown_winner, reason, ranks = parsed
        back: dict[str, Literal["a", "b"]] = {"A": "b", "B": "a"} if swap else {"A": "a", "B": "b"}
        winner = back.get(shown_winner) if shown_winner else None
        mapped: dict[str, dict[str, float]] | None = (
            {back[k]: v for k, v in ranks.items() if k in back} if ranks else None
        )
        return Verdict(winner=winner, reason=reason, ranks=mapped)


class PersonJudge:
    """A person choosing between the two images (seed 004's evaluation page as the judge).

    Each pair becomes a question on the web UI's evaluation page (``ctx.ask_preference``); the
    job waits for the choice, up to ``judge_timeout`` seconds a pair. Nobody answering, or "can't
    decide", leaves the pair undecided, and the scores order it. A pair the person already
    judged (on the A/B page, before or during the run) is answered from that preference.
    """

    name = "person"

    def __init__(self, ctx: PipelineContext, timeout: float) -> None:
        self.ctx, self.timeout = ctx, timeout

    @classmethod
    def create(cls, ctx: PipelineContext, params: BeamSearchParams) -> PersonJudge:
        return cls(ctx, params.judge_timeout)

    async def compare(self, prompt: str, a: Entrant, b: Entrant) -> Verdict:
        answer = await self.ctx.ask_preference(
            prompt, {"candidate": a.id, "image": a.image}, {"candidate": b.id, "image": b.image}, timeout=self.timeout
        )
        if answer is None:
            return Verdict(winner=None, reason=f"no choice within {self.timeout:g} s; the scores decide")
        if answer["winner"] is None:
            return Verdict(winner=None, reason=answer["reason"] or "the person could not decide; the scores decide")
        return Verdict(winner=answer["winner"], reason=answer["reason"] or "a person's choice")


def _data_uri(ctx: PipelineContext, path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(ctx.read_artifact(path)).decode()


#: ``judge`` parameter value -> factory. Another judge registers itself here by name.
JUDGES: dict[str, JudgeFactory] = {"model": ModelJudge.create, "person": PersonJudge.create}


def make_judge(ctx: PipelineContext, params: BeamSearchParams) -> Judge:
    return JUDGES[params.judge](ctx, params)
