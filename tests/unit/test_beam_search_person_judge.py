"""The beam search with a person as its pairwise judge, on the fake context: every pair is put
to the person, their choices decide, and nobody answering leaves the pair to the scores."""

from __future__ import annotations

import asyncio

import msgspec
from loom.plugins.beam_search import BeamSearch, BeamSearchParams
from loom.sdk.testing import FakePipelineContext


def params(**kw) -> BeamSearchParams:
    base = {"prompt": "a red apple", "width": 64, "height": 64, "seed": 3, "iterations": 2, "beam_width": 3}
    return msgspec.convert({**base, "ranking": "pairwise", "judge": "person", **kw}, BeamSearchParams)


def lineage(ctx) -> dict[str, dict]:
    nodes: dict[str, dict] = {}
    for kind, data in ctx.events:
        if kind == "lineage":
            nodes[data["id"]] = {**nodes.get(data["id"], {}), **data}
    return nodes


def test_the_persons_choices_rank_the_candidates():
    def person(prompt, a, b):  # prefers the lower candidate id, and says why
        return {"winner": "a" if a["candidate"] < b["candidate"] else "b", "reason": f"{prompt}: the earlier one"}

    ctx = FakePipelineContext(default_reply='{"prompt": "an apple"}', person=person)
    result = asyncio.run(BeamSearch().run(params(judge_timeout=42), ctx))
    assert ctx.questions and all(t == 42 for *_, t in ctx.questions)
    assert all(q[1]["image"].endswith(".png") for q in ctx.questions)
    nodes = lineage(ctx)
    verdicts = [c for n in nodes.values() for c in n["comparisons"]]
    assert verdicts and all(c["decided_by"] == "judge" for c in verdicts)
    assert all(c["reason"] == "a red apple: the earlier one" for c in verdicts)
    assert sorted(i for i, n in nodes.items() if 0 in n["kept_in"]) == ["i0c0", "i0c1"]
    assert result["comparisons"]["total"] == len(ctx.questions)


def test_nobody_answering_leaves_each_pair_to_the_scores():
    ctx = FakePipelineContext(default_reply='{"prompt": "an apple"}')  # person=None: no answers
    asyncio.run(BeamSearch().run(params(judge_timeout=5), ctx))
    verdicts = [c for n in lineage(ctx).values() for c in n["comparisons"]]
    assert verdicts and all(c["decided_by"] == "scores" for c in verdicts)
    assert all(c["reason"] == "no choice within 5 s; the scores decide" for c in verdicts)
