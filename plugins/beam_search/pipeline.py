"""The beam search pipeline (seed 004): expand, generate, evaluate, keep the best, refine.

Iteration 0 expands the user's prompt into N candidates (a WHAT and a HOW prompt each, combined
into one), generates and evaluates each, and keeps the top M. Each later iteration critiques
every kept parent (the vision model's description plus its scores, read by the LLM), refines its
WHAT or HOW prompt into children (N children in all), generates and evaluates them, and ranks
parents and children together to keep the top M. The winner is the best candidate of the run.

Work is submitted phase by phase (``schedule="phased"``): all LLM calls of an iteration, then
all images, then all evaluations; the parents' descriptions come first, right after the
previous iteration's evaluations on the same vision model. A card that holds one model at a
time therefore swaps at most three times an iteration. Every call is a durable ``ctx.step``, so
a resumed job continues from the last finished one, and cancel stops at the next step.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loom.sdk.errors import UnsupportedParameter
from loom.sdk.pipelines import Pipeline, PipelineContext

from . import prompts
from .lineage import Candidate
from .params import BeamSearchParams
from .ranking import children_per_parent, dimensions, rank, total_score

Stage = Callable[[Candidate], Awaitable[None]]


class BeamSearch(Pipeline):
    """Beam search over image prompts with critique, refinement and lineage (seed 004)."""

    name = "beam_search"
    Params = BeamSearchParams
    description = (
        "Beam search over image prompts: N WHAT+HOW candidates per iteration, scored by "
        "alpha*CLIP + (1-alpha)*aesthetic, the top M critiqued and refined; lineage of every candidate."
    )

    async def run(self, params: BeamSearchParams, ctx: PipelineContext) -> dict[str, Any]:
        return await _Search(params, ctx).run()


class _Search:
    def __init__(self, p: BeamSearchParams, ctx: PipelineContext) -> None:
        self.p, self.ctx = p, ctx
        self.llm = ctx.model_for("chat", p.llm_model)
        self.image_model = ctx.model_for("image", p.image_model)
        self.vision = ctx.model_for("vision", p.vision_model)
        self.seed = p.seed if p.seed is not None else int(hashlib.sha256(ctx.job_id.encode()).hexdigest()[:7], 16)
        self.candidates: dict[str, Candidate] = {}
        self.critiques: dict[str, dict[str, str]] = {}  # "i{k}/{parent}" -> critique
        self.units_total = 4 + 5 * (p.iterations - 1)
        self.units_done = 0.0

    # --- the search -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        p = self.p
        self.progress(0, "starting")
        kept = await self.expansion()
        for k in range(1, p.iterations):
            kept = await self.refinement(k, kept)
        winner = rank(c for c in self.candidates.values() if c.score is not None)[0]
        winner.winner = True
        self.report(winner)
        self.progress(self.units_total, "done", f"winner {winner.id} scored {winner.score:.2f}")
        return {
            "winner": winner.node(),
            "finalists": [c.node() for c in kept],
            "iterations": p.iterations,
            "candidates": len(self.candidates),
            "models": {"llm": self.llm, "image": self.image_model, "vision": self.vision},
            "scoring": {
                "alpha": p.alpha,
                "formula": "alpha * (100 * clip) + (1 - alpha) * (10 * aesthetic)",
                "clip_against": "the user's prompt",
            },
            "output_dir": self.ctx.output_dir,
            "metadata": f"{self.ctx.output_dir}/metadata.json",
        }

    async def expansion(self) -> list[Candidate]:
        """Iteration 0: N candidates from the user's prompt; keep the top M."""
        cands = [Candidate(iteration=0, index=i) for i in range(self.p.beam_width)]
        for c in cands:
            self.candidates[c.id] = c
        await self.stages(0, cands, [("expand", self.expand), ("generate", self.generate), ("evaluate", self.evaluate)])
        return self.keep(0, cands)

    async def refinement(self, k: int, parents: list[Candidate]) -> list[Candidate]:
        """Iteration k: critique each parent, refine into children, evaluate, rank with parents."""
        dims = dimensions(k, self.p.refine)
        children: list[Candidate] = []
        for parent, count in zip(parents, children_per_parent(self.p.beam_width, len(parents))):
            for _ in range(count):
                child = Candidate(
                    iteration=k,
                    index=len(children),
                    parent=parent.id,
                    dimension="+".join(dims),
                    what=parent.what,
                    how=parent.how,
                )
                children.append(child)
                self.candidates[child.id] = child

        async def critique(parent: Candidate) -> None:
            await self.describe(parent)
            await self.critique(k, parent, dims)

        if self.p.schedule == "phased":
            await self.stages(k, parents, [("describe", self.describe)])
            await self.stages(k, parents, [("critique", lambda c: self.critique(k, c, dims))], units=0)
        else:
            await self.stages(k, parents, [("critique", critique)])
        await self.stages(
            k,
            children,
            [("refine", lambda c: self.refine(k, c, dims)), ("generate", self.generate), ("evaluate", self.evaluate)],
        )
        return self.keep(k, [*parents, *children])

    def keep(self, k: int, pool: Sequence[Candidate]) -> list[Candidate]:
        """Comparative ranking of the pool; the top M survive into iteration k+1."""
        ranked = rank(pool)
        kept = ranked[: self.p.keep_top]
        for position, c in enumerate(ranked, 1):
            c.rank = position
            if c in kept:
                c.kept_in.append(k)
            self.report(c)
        self.units_done += 1
        best = kept[0]
        self.ctx.emit(
            "iteration",
            {
                "iteration": k,
                "kept": [c.id for c in kept],
                "ranking": [c.id for c in ranked],
                "best": best.id,
                "best_score": best.score,
            },
        )
        self.progress(self.units_done, f"iteration {k}: ranked", f"kept {', '.join(c.id for c in kept)}")
        return kept

    # --- scheduling -------------------------------------------------------------------------

    async def stages(self, k: int, items: list[Candidate], stages: list[tuple[str, Stage]], units: int = 1) -> None:
        """Phased: each stage for every item (concurrently) before the next stage. Sequential:
        each item through every stage before the next item, one call at a time."""
        if self.p.schedule == "phased":
            for label, stage in stages:
                self.progress(self.units_done, f"iteration {k}: {label}")
                async with asyncio.TaskGroup() as tg:
                    for item in items:
                        tg.create_task(stage(item))
                self.units_done += units
            return
        for n, item in enumerate(items):
            self.progress(self.units_done, f"iteration {k}: {item.id}")
            for _, stage in stages:
                await stage(item)
            self.units_done += units * len(stages) / len(items)

    def progress(self, units: float, stage: str, message: str = "") -> None:
        self.ctx.progress(100.0 * units / self.units_total, stage, message)

    def report(self, c: Candidate) -> None:
        self.ctx.emit("lineage", c.node())

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
        await self.combine(c)

    async def combine(self, c: Candidate) -> None:
        c.combined = await self.prompt_step(
            f"{c.id}/combine",
            prompts.combine_messages(self.p.prompt, c.what, c.how),
            prompts.fallback_combine(c.what, c.how),
        )
        self.report(c)

    async def refine(self, k: int, c: Candidate, dims: tuple[str, ...]) -> None:
        parent = self.candidates[c.parent]
        critique = self.critiques[f"i{k}/{parent.id}"]
        siblings = [x for x in self.candidates.values() if x.iteration == k and x.parent == parent.id]
        position = siblings.index(c)
        c.critique = critique
        for dim in dims:
            current = parent.what if dim == "what" else parent.how
            messages = prompts.refine_messages(dim, self.p.prompt, current, critique, position, len(siblings))
            refined = await self.prompt_step(
                f"{c.id}/refine-{dim}", messages, prompts.fallback_refine(current, critique)
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

        c.image = (await self.ctx.step(f"{c.id}/image", call))["path"]
        c.status = "generated"
        self.report(c)

    async def evaluate(self, c: Candidate) -> None:
        async def call() -> dict:
            s = await self.ctx.score(self.vision, self.ctx.read_artifact(c.image), self.p.prompt)
            return {"clip": s.clip, "aesthetic": s.aesthetic}

        s = await self.ctx.step(f"{c.id}/score", call)
        c.clip, c.aesthetic = s["clip"], s["aesthetic"]
        c.score = round(total_score(c.clip, c.aesthetic, self.p.alpha), 6)
        c.status = "scored"
        self.report(c)

    async def describe(self, c: Candidate) -> None:
        if c.description is not None:
            return

        async def call() -> dict:
            return {"text": await self.ctx.describe(self.vision, self.ctx.read_artifact(c.image), detail="normal")}

        c.description = (await self.ctx.step(f"{c.id}/describe", call))["text"]
        self.report(c)

    async def critique(self, k: int, parent: Candidate, dims: tuple[str, ...]) -> None:
        dim = (
            dims[0]
            if len(dims) == 1
            else ("what" if (parent.clip or 0) * 100 < (parent.aesthetic or 0) * 10 else "how")
        )

        async def call() -> dict:
            messages = prompts.critique_messages(
                self.p.prompt,
                parent.what,
                parent.how,
                parent.combined,
                100 * (parent.clip or 0),
                parent.aesthetic or 0,
                parent.description or "",
                dim,
                k,
            )
            text = await self.ask(f"i{k}/critique/{parent.id}", messages, "critique", prompts.CRITIQUE_SCHEMA)
            parsed = prompts.parse_critique(text)
            fallback = prompts.rule_critique(100 * (parent.clip or 0), parent.aesthetic or 0, dim)
            return {**(parsed or fallback), "dimension": dim, "parsed": parsed is not None}

        self.critiques[f"i{k}/{parent.id}"] = await self.ctx.step(f"i{k}/critique/{parent.id}", call)

    def call_seed(self, key: str) -> int:
        return (self.seed + int(hashlib.sha256(key.encode()).hexdigest()[:7], 16)) % 2**31
