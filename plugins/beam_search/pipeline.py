"""The beam search pipeline (seed 004): expand, generate, score, rank, critique, refine.

Iteration 0 expands the user's prompt into N candidates (a WHAT and a HOW prompt each, combined
into one), generates and scores each, and ranks them to keep the top M. Each later iteration
describes every kept parent (the describer), critiques it per dimension (the LLM, from the
description, the scores and, when ranking pairwise, the judge's reasons), gives it floor(N/M)
children whose WHAT and HOW (or, alternating, one of them) are refined by those critiques,
generates and scores them, and ranks parents and children together. The winner is the first of
the last ranking, and every candidate gets the seed's global rank.

Roles are separate models: ``llm`` (chat), ``image``, ``scorer`` (CLIP + aesthetic scores),
``describer`` (words for the critique) and, for pairwise ranking, the ``judge``; each defaults to
its ``[routes]`` key (``score`` / ``describe`` / ``judge`` fall back to ``vision``), since a local
CLIP model scores but cannot describe and a captioner describes but cannot score.

Failure of one candidate is not failure of the job: a candidate whose prompts, image, score or
parent's critique fail is marked ``failed`` in the lineage with its error, and the iteration goes
on with the rest; the job fails when every candidate of an iteration has failed. Errors that no
other candidate could escape (cancellation, a refused or missing key, a model that lacks the
capability, an unknown model) stop the job at once.

Durability: work is done in *rounds* (one stage over an iteration's candidates, e.g. all images);
each round is a step whose stored outcome is every candidate's state, successes and failures,
and each call inside it is a step too. A resumed job replays finished rounds, re-runs only the
calls of an unfinished round that had not finished, and so never re-asks a call whose answer it
used. A round whose candidates all failed is not stored, so a resume after fixing the model tries
them again. Rankings (and each judge verdict) are steps as well.

Work is submitted phase by phase (``schedule="phased"``): descriptions, then all LLM calls, then
all images, then all scores, then the judge; a card that holds one model at a time swaps at
most once per phase.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loom.sdk import tracing
from loom.sdk.errors import (
    AuthenticationFailed,
    Cancelled,
    CapabilityNotSupported,
    LoomError,
    NotFound,
    OutOfMemory,
    PermissionDenied,
    ProviderError,
    Unavailable,
    UnsupportedParameter,
)
from loom.sdk.pipelines import Pipeline, PipelineContext

from . import prompts, seedmeta
from .judge import Entrant, Verdict, make_judge
from .lineage import Candidate
from .params import BeamSearchParams
from .ranking import (
    children_per_parent,
    comparison_bound,
    dimensions,
    global_ranks,
    rank,
    rank_key,
    rank_pairwise,
    total_score,
)

Stage = Callable[[Candidate], Awaitable[None]]
#: Errors no other candidate could escape: they stop the job instead of failing one candidate.
_FATAL = (
    Cancelled,
    AuthenticationFailed,
    PermissionDenied,
    NotFound,
    CapabilityNotSupported,
    UnsupportedParameter,
)


class IterationFailed(ProviderError):
    """Every candidate of an iteration failed."""

    code = "all_candidates_failed"


def candidate_error(e: BaseException) -> dict[str, Any] | None:
    """``e`` as one candidate's failure, or None when it must stop the job."""
    if not isinstance(e, LoomError) or isinstance(e, _FATAL):
        return None
    if isinstance(e, Unavailable) and not isinstance(e, OutOfMemory):
        return None  # shutting down, or waited too long in a queue: not the candidate's doing
    return {"type": e.type, "code": e.code, "message": e.message}


class BeamSearch(Pipeline):
    """Beam search over image prompts with critique, refinement and lineage (seed 004)."""

    name = "beam_search"
    Params = BeamSearchParams
    description = (
        "Beam search over image prompts: N WHAT+HOW candidates, scored by alpha*CLIP + "
        "(1-alpha)*aesthetic or ranked pairwise by a judge, the top M critiqued and refined; "
        "lineage of every candidate, failed ones included."
    )
    #: What a job uses (a pairwise judge only sometimes: it is checked when it is named).
    model_roles = {
        "chat": ("llm_model",),
        "image": ("image_model",),
        "score": ("scorer_model", "vision_model"),
        "describe": ("describer_model", "vision_model"),
    }

    async def run(self, params: BeamSearchParams, ctx: PipelineContext) -> dict[str, Any]:
        return await _Search(params, ctx).run()


class _Search:
    def __init__(self, p: BeamSearchParams, ctx: PipelineContext) -> None:
        self.p, self.ctx = p, ctx
        self.llm = ctx.model_for("chat", p.llm_model)
        self.image_model = ctx.model_for("image", p.image_model)
        self.scorer = ctx.model_for("score", p.scorer_model or p.vision_model)
        self.describer = ctx.model_for("describe", p.describer_model or p.vision_model)
        self.judge = make_judge(ctx, p) if p.ranking == "pairwise" else None
        self.seed = p.seed if p.seed is not None else int(hashlib.sha256(ctx.job_id.encode()).hexdigest()[:7], 16)
        self.candidates: dict[str, Candidate] = {}
        #: iteration -> {"order": ids best first, "kept", "comparisons", "global"}.
        self.rankings: dict[int, dict[str, Any]] = {}
        self.dims: dict[int, str] = {0: "what+how"}
        self.units_total = 4 + 6 * (p.iterations - 1)
        self.units_done = 0.0
        self.winner: Candidate | None = None
        #: Each candidate's node as last reported (see :meth:`report`).
        self._reported: dict[str, dict[str, Any]] = {}

    # --- the search -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        p = self.p
        self.progress(0, "starting")
        try:
            kept = await self.expansion()
            for k in range(1, p.iterations):
                kept = await self.refinement(k, kept)
        finally:
            self.write_records()  # what was attempted, failures included, even when the job fails
        winner = self.winner = kept[0]
        winner.winner = True
        self.report(winner)
        final = self.final_global_ranking()
        self.write_records(final)
        failed = [c for c in self.candidates.values() if c.failed]
        self.progress(self.units_total, "done", f"winner {winner.id} scored {winner.score:.2f}")
        result: dict[str, Any] = {
            "winner": winner.node(),
            "finalists": [c.node() for c in kept],
            "iterations": p.iterations,
            "candidates": len(self.candidates),
            "failed": len(failed),
            "failed_by_iteration": [sum(1 for c in failed if c.iteration == k) for k in range(p.iterations)],
            "failures": [{"id": c.id, **(c.error or {})} for c in failed],
            "ranking": p.ranking,
            "global_ranking": final,
            "models": {
                "llm": self.llm,
                "image": self.image_model,
                "scorer": self.scorer,
                "describer": self.describer,
                "judge": self.judge.name if self.judge else None,
            },
            "scoring": {
                "alpha": p.alpha,
                "formula": "alpha * (100 * clip) + (1 - alpha) * (10 * aesthetic)",
                "scales": {"clip": "0..1", "alignment": "0..100", "aesthetic": "0..10", "score": "0..100"},
                "clip_against": "the user's prompt" if p.score_against == "prompt" else "each candidate's prompt",
            },
            "output_dir": self.ctx.output_dir,
            "metadata": f"{self.ctx.output_dir}/metadata.json",
            "rankings": f"{self.ctx.output_dir}/rankings.json",
        }
        if p.ranking == "pairwise":
            per = [len(self.rankings[k]["comparisons"]) for k in sorted(self.rankings)]
            result["comparisons"] = {
                "total": sum(per),
                "by_iteration": per,
                "bound_by_iteration": [self.rankings[k]["bound"] for k in sorted(self.rankings)],
                "undecided": sum(
                    1 for r in self.rankings.values() for v in r["comparisons"] if v["decided_by"] != "judge"
                ),
            }
        return result

    async def expansion(self) -> list[Candidate]:
        """Iteration 0: N candidates from the user's prompt; keep the top M."""
        cands = [self.add(Candidate(iteration=0, index=i)) for i in range(self.p.beam_width)]
        stages = [("expand", self.expand), ("image", self.generate), ("score", self.evaluate)]
        await self.rounds(0, cands, stages)
        return await self.keep(0, [], cands)

    async def refinement(self, k: int, parents: list[Candidate]) -> list[Candidate]:
        """Iteration k: describe and critique each parent, refine its children, generate, score,
        rank with the parents."""
        dims = dimensions(k, self.p.refine)
        self.dims[k] = "+".join(dims)
        children: list[Candidate] = []
        per_parent = children_per_parent(self.p.beam_width, self.p.keep_top)
        for position, parent in enumerate(parents):
            for j in range(per_parent):
                child = Candidate(
                    iteration=k,
                    index=position * per_parent + j,
                    parent=parent.id,
                    dimension=self.dims[k],
                    what=parent.what,
                    how=parent.how,
                )
                children.append(self.add(child))

        async def critique(c: Candidate) -> None:
            await self.critique(k, c, dims)

        if self.p.schedule == "phased":
            undescribed = [c for c in parents if c.description is None and c.description_error is None]
            await self.round(k, "describe", undescribed, [("describe", self.describe)], own=False)
            await self.round(k, "critique", parents, [("critique", critique)], own=False)
        else:
            await self.round(k, "critique", parents, [("describe", self.describe), ("critique", critique)], own=False)
        stages = [("refine", lambda c: self.refine(k, c, dims)), ("image", self.generate), ("score", self.evaluate)]
        await self.rounds(k, children, stages)
        return await self.keep(k, parents, children)

    def add(self, c: Candidate) -> Candidate:
        self.candidates[c.id] = c
        self.report(c)
        return c

    # --- rounds: one stage over an iteration's candidates, durable as a whole ----------------

    async def rounds(self, k: int, items: list[Candidate], stages: Sequence[tuple[str, Stage]]) -> None:
        """Phased: one round per stage. Sequential: one round, each item through every stage."""
        if self.p.schedule == "phased":
            for stage in stages:
                await self.round(k, stage[0], items, [stage])
        else:
            await self.round(k, "candidates", items, stages)

    async def round(
        self, k: int, name: str, items: list[Candidate], stages: Sequence[tuple[str, Stage]], *, own: bool = True
    ) -> None:
        """Run ``stages`` over the live ``items`` as one step whose outcome is each one's state.
        ``own``: the items are iteration ``k``'s candidates, so if all have failed the iteration
        has failed (and the round is not stored: a resume tries them again)."""
        live = [c for c in items if not c.failed]

        async def work() -> dict[str, Any]:
            if self.p.schedule == "phased":
                for position, (label, stage) in enumerate(stages):
                    base = self.units_done + position
                    self.progress(base, f"iteration {k}: {label}", f"0 of {len(live)}")
                    todo = [c for c in live if not c.failed]
                    finished = 0

                    async def one(
                        c: Candidate,
                        label: str = label,
                        stage: Stage = stage,
                        base: float = base,
                        todo: list[Candidate] = todo,
                    ) -> None:
                        # Each candidate's end moves the bar: a stage of slow calls (iteration 0's
                        # prompts) would otherwise sit at its first value until all are done.
                        nonlocal finished
                        await self.attempt(c, label, stage)
                        finished += 1
                        self.progress(
                            base + finished / max(1, len(todo)),
                            f"iteration {k}: {label}",
                            f"{finished} of {len(todo)}",
                        )

                    async with asyncio.TaskGroup() as tg:
                        for c in todo:
                            tg.create_task(one(c))
            else:
                for n, c in enumerate(live):
                    self.progress(self.units_done + len(stages) * n / max(1, len(live)), f"iteration {k}: {c.id}")
                    for label, stage in stages:
                        if c.failed:
                            break
                        await self.attempt(c, label, stage)
            if own and items and all(c.failed for c in items):
                error = next(c.error for c in items if c.error)
                first = next(c for c in items if c.error is error)
                raise IterationFailed(
                    f"iteration {k}: every candidate failed ({len(items)} of {len(items)}); "
                    f"{first.id} failed at {error['stage']}: {error['message']}"
                )
            return {c.id: c.state() for c in live}

        if live:
            outcome = await self.ctx.step(f"i{k}/round/{name}", work)
            for c in live:
                c.restore(outcome[c.id])
                self.report(c)
        self.units_done += len(stages)
        failed = sum(1 for c in items if c.failed)
        if failed and own:
            self.progress(self.units_done, f"iteration {k}: {name}", f"{failed} of {len(items)} failed")

    async def attempt(self, c: Candidate, label: str, stage: Stage) -> None:
        """One stage for one candidate; a failure that is the candidate's own marks it failed.
        Traced, each is a span under its round's step (its model calls are its children)."""
        attributes: dict[str, tracing.AttributeValue] = {
            "loom.candidate.id": c.id,
            "loom.candidate.iteration": c.iteration,
            "loom.stage": label,
        }
        try:
            with tracing.span(f"candidate {c.id} {label}", attributes):
                await stage(c)
        except LoomError as e:
            error = candidate_error(e)
            if error is None:
                raise
            c.fail(getattr(e, "stage", label), error)
            self.report(c)

    # --- ranking ----------------------------------------------------------------------------

    async def keep(self, k: int, parents: list[Candidate], children: list[Candidate]) -> list[Candidate]:
        """Rank the parents (already in order) and the live children; the top M go on."""
        live = [c for c in children if not c.failed]
        self.progress(self.units_done, f"iteration {k}: ranking")
        bound = comparison_bound(len(parents), len(live))
        if self.judge is None:
            ranked = rank([*parents, *live])
            comparisons: list[dict[str, Any]] = []
        else:
            out = await self.ctx.step(f"i{k}/rank", lambda: self.rank_pairwise(k, parents, live))
            ranked = [self.candidates[cid] for cid in out["order"]]
            comparisons = out["comparisons"]
            for v in comparisons:
                a, b = self.candidates[v["a"]], self.candidates[v["b"]]
                a.record_comparison(k, b.id, v["winner_id"] == a.id, v)
                b.record_comparison(k, a.id, v["winner_id"] == b.id, v)
        kept = ranked[: self.p.keep_top]
        ranks = global_ranks([c.id for c in ranked], [c.id for c in parents], self.p.beam_width)
        for position, c in enumerate(ranked, 1):
            c.rank, c.ranked_in = position, k
            c.global_rank, c.global_rank_note = ranks[c.id]
            if c in kept:
                c.kept_in.append(k)
            self.report(c)
        self.rankings[k] = {
            "order": [c.id for c in ranked],
            "kept": [c.id for c in kept],
            "comparisons": comparisons,
            "bound": bound,
            "global": {cid: list(v) for cid, v in ranks.items()},
        }
        self.units_done += 1
        best = kept[0]
        self.ctx.emit(
            "iteration",
            {
                "iteration": k,
                "kept": [c.id for c in kept],
                "ranking": [c.id for c in ranked],
                "failed": [c.id for c in children if c.failed],
                "comparisons": len(comparisons),
                "best": best.id,
                "best_score": best.score,
            },
        )
        self.write_records()
        self.progress(self.units_done, f"iteration {k}: ranked", f"kept {', '.join(c.id for c in kept)}")
        return kept

    async def rank_pairwise(self, k: int, parents: list[Candidate], children: list[Candidate]) -> dict[str, Any]:
        """The judge's ranking: children merge-sorted, then merged with the parents (whose order
        the previous ranking settled). Each verdict is a step of its own."""
        comparisons: list[dict[str, Any]] = []

        async def better(x: Candidate, y: Candidate) -> bool:
            verdict = await self.ctx.step(f"i{k}/judge/{x.id}~{y.id}", lambda: self.compare(x, y))
            if verdict["winner"] is None:  # undecided: the scores decide, as the seed's fallback
                verdict["winner"] = "a" if rank_key(x) < rank_key(y) else "b"
                verdict["decided_by"] = "scores"
            verdict["winner_id"] = x.id if verdict["winner"] == "a" else y.id
            comparisons.append(verdict)
            return verdict["winner"] == "a"

        order = await rank_pairwise(parents, children, better)
        return {"order": [c.id for c in order], "comparisons": comparisons}

    async def compare(self, x: Candidate, y: Candidate) -> dict[str, Any]:
        assert self.judge is not None and x.image and y.image
        a = Entrant(id=x.id, image=x.image, combined=x.combined)
        b = Entrant(id=y.id, image=y.image, combined=y.combined)
        try:
            verdict = await self.judge.compare(self.p.prompt, a, b)
        except LoomError as e:
            error = candidate_error(e)
            if error is None:
                raise
            verdict = Verdict(winner=None, reason=f"the judge failed: {error['message']}")
        return {
            "a": x.id,
            "b": y.id,
            "winner": verdict.winner,
            "reason": verdict.reason,
            "ranks": verdict.ranks,
            "judge": self.judge.name,
            "decided_by": "judge" if verdict.winner else "scores",
        }

    def final_global_ranking(self) -> list[dict[str, Any]]:
        """Every candidate that was ranked, by its last global rank (the seed's final ranking)."""
        ranked = [c for c in self.candidates.values() if c.global_rank is not None]
        ranked.sort(key=lambda c: (c.global_rank, rank_key(c)))
        return [
            {
                "candidateId": c.id,
                "globalRank": c.global_rank,
                "globalRankNote": c.global_rank_note,
                "iteration": c.iteration,
                "localId": c.index,
                "totalScore": c.score,
            }
            for c in ranked
        ]

    # --- reporting --------------------------------------------------------------------------

    def progress(self, units: float, stage: str, message: str = "") -> None:
        self.ctx.progress(100.0 * units / self.units_total, stage, message)

    def report(self, c: Candidate) -> None:
        """A lineage event, unless the candidate is as it was last reported (a round restores and
        re-reports every candidate: the same "scored" line again is noise in the job's log)."""
        node = c.node()
        if self._reported.get(c.id) == node:
            return
        self._reported[c.id] = node
        self.ctx.emit("lineage", node)

    def write_records(self, final: list[dict[str, Any]] | None = None) -> None:
        """The seed's records: metadata.json fields and rankings.json."""
        self.ctx.set_metadata(
            seedmeta.metadata(
                self.candidates,
                self.rankings,
                self.dims,
                user_prompt=self.p.prompt,
                negative_prompt=self.p.negative_prompt,
                winner=self.winner,
            )
        )
        if self.rankings:
            session = self.ctx.output_dir.rsplit("/", 1)[-1]
            data = seedmeta.rankings_json(session, self.candidates, self.rankings, final)
            self.ctx.save_artifact("rankings.json", json.dumps(data, indent=2).encode(), {"kind": "rankings"})

    # --- the steps --------------------------------------------------------------------------

    async def ask(self, key: str, messages: list[dict], schema_name: str, schema: dict) -> str:
        """One LLM call asking for JSON; a model that refuses response_format is asked plainly."""
        kw = {"max_tokens": self.p.max_tokens, "temperature": self.p.temperature, "seed": self.call_seed(key)}
        try:
            return await self.ctx.chat(
                self.llm, messages, response_format=prompts.response_format(schema_name, schema), **kw
            )
        except UnsupportedParameter:
            return await self.ctx.chat(self.llm, messages, **kw)

    async def prompt_step(self, key: str, messages: list[dict], fallback: str) -> str:
        async def call() -> dict:
            text = await self.ask(key, messages, "prompt", prompts.PROMPT_SCHEMA)
            parsed = prompts.parse_prompt(text)
            return {"prompt": parsed or fallback, "parsed": parsed is not None}

        return (await self.ctx.step(key, call))["prompt"]

    async def expand(self, c: Candidate) -> None:
        user = self.p.prompt

        async def one(dim: str) -> str:
            return await self.prompt_step(
                f"{c.id}/expand-{dim}",
                prompts.expand_messages(dim, user, c.index),
                prompts.fallback_expand(dim, user, c.index),
            )

        if self.p.schedule == "phased":
            c.what, c.how = await asyncio.gather(one("what"), one("how"))
        else:
            c.what, c.how = await one("what"), await one("how")
        self.report(c)
        await self.combine(c)

    async def combine(self, c: Candidate) -> None:
        c.combined = await self.prompt_step(
            f"{c.id}/combine",
            prompts.combine_messages(self.p.prompt, c.what, c.how),
            prompts.fallback_combine(c.what, c.how),
        )
        self.report(c)

    async def refine(self, k: int, c: Candidate, dims: tuple[str, ...]) -> None:
        parent = self.candidates[c.parent or ""]
        critique = parent.critique_log.get(str(k)) or {}
        if "error" in critique:
            raise _CritiqueFailed(critique["error"])
        siblings = [x for x in self.candidates.values() if x.iteration == k and x.parent == parent.id]
        position = siblings.index(c)
        c.critique = {dim: critique[dim] for dim in dims}
        self.report(c)
        for dim in dims:
            current = parent.what if dim == "what" else parent.how
            messages = prompts.refine_messages(dim, self.p.prompt, current, critique[dim], position, len(siblings))
            refined = await self.prompt_step(
                f"{c.id}/refine-{dim}", messages, prompts.fallback_refine(current, critique[dim])
            )
            if dim == "what":
                c.what = refined
            else:
                c.how = refined
        await self.combine(c)

    async def generate(self, c: Candidate) -> None:
        async def call() -> dict:
            seed = self.call_seed(f"{c.id}/image")
            png = await self.ctx.generate_image(
                self.image_model,
                c.combined,
                width=self.p.width,
                height=self.p.height,
                seed=seed,
                steps=self.p.steps,
                negative_prompt=self.p.negative_prompt,
            )
            meta = {"candidate": c.id, "parent": c.parent, "iteration": c.iteration, "prompt": c.combined, "seed": seed}
            return {"path": self.ctx.save_artifact(f"{c.id}.png", png, meta), "seed": seed}

        out = await self.ctx.step(f"{c.id}/image", call)
        c.image, c.image_seed = out["path"], out["seed"]
        c.status = "generated"
        self.report(c)

    async def evaluate(self, c: Candidate) -> None:
        assert c.image is not None
        text = self.p.prompt if self.p.score_against == "prompt" else c.combined

        async def call() -> dict:
            s = await self.ctx.score(self.scorer, self.ctx.read_artifact(c.image or ""), text)
            return {"clip": s.clip, "aesthetic": s.aesthetic}

        s = await self.ctx.step(f"{c.id}/score", call)
        c.clip, c.aesthetic = s["clip"], s["aesthetic"]
        c.score = round(total_score(c.clip, c.aesthetic, self.p.alpha), 6)
        c.status = "scored"
        self.report(c)

    async def describe(self, c: Candidate) -> None:
        """Words for the critique; a parent the describer fails on is critiqued without them."""
        if c.description is not None or c.description_error is not None:
            return

        async def call() -> dict:
            return {"text": await self.ctx.describe(self.describer, self.ctx.read_artifact(c.image or ""))}

        try:
            c.description = (await self.ctx.step(f"{c.id}/describe", call))["text"]
        except LoomError as e:
            error = candidate_error(e)
            if error is None:
                raise
            c.description_error = error["message"]
        self.report(c)

    async def critique(self, k: int, parent: Candidate, dims: tuple[str, ...]) -> None:
        """A critique of ``parent`` per refined dimension (the seed's CritiqueGenerator). If one
        fails, the parent's children fail with it (the parent itself stays ranked)."""
        alignment, aesthetic = 100 * (parent.clip or 0), parent.aesthetic or 0
        description = parent.description or f"(no description: {parent.description_error or 'none'})"
        out: dict[str, Any] = {}
        for dim in dims:

            async def call(dim: str = dim) -> dict:
                messages = prompts.critique_messages(
                    self.p.prompt,
                    parent.what,
                    parent.how,
                    parent.combined,
                    alignment,
                    aesthetic,
                    description,
                    dim,
                    k,
                    parent.judged(),
                )
                key = f"i{k}/critique/{parent.id}/{dim}"
                parsed = prompts.parse_critique(await self.ask(key, messages, "critique", prompts.CRITIQUE_SCHEMA))
                fallback = prompts.rule_critique(alignment, aesthetic, dim)
                return {**(parsed or fallback), "dimension": dim, "parsed": parsed is not None}

            try:
                out[dim] = await self.ctx.step(f"i{k}/critique/{parent.id}/{dim}", call)
            except LoomError as e:
                error = candidate_error(e)
                if error is None:
                    raise
                out = {"error": {"of": parent.id, **error}}
                break
        # Kept in the parent's state, so a replayed round restores it.
        parent.critique_log = {**parent.critique_log, str(k): out}

    def call_seed(self, key: str) -> int:
        return (self.seed + int(hashlib.sha256(key.encode()).hexdigest()[:7], 16)) % 2**31


class _CritiqueFailed(LoomError):
    """A child's refinement had no critique to follow: its parent's critique failed."""

    stage = "critique"

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"the critique of {error.get('of')} failed: {error.get('message')}")
        self.type = error.get("type", "server_error")
        self.code = error.get("code")
