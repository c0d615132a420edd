"""Pairwise ranking against deterministic judges whose preferences are known: the order is right
and the comparisons stay within the documented bound; undecided pairs fall back to scores; the
model judge reads the seed's verdict format and undoes its swap; failures stay per candidate."""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import msgspec
import pytest
from loom.plugins.beam_search import BeamSearch, BeamSearchParams, prompts
from loom.plugins.beam_search.judge import JUDGES, Entrant, ModelJudge, Verdict
from loom.plugins.beam_search.ranking import (
    comparison_bound,
    global_ranks,
    merge_sort,
    merge_sort_bound,
    rank_pairwise,
)
from loom.sdk.errors import ProviderError
from loom.sdk.testing import FakePipelineContext


def counting(worth: dict[str, float]):
    """``better`` for a judge that prefers the higher worth, counting its comparisons."""
    calls: list[tuple[str, str]] = []

    async def better(a: str, b: str) -> bool:
        calls.append((a, b))
        return worth[a] > worth[b]

    return better, calls


def test_merge_sort_bound_is_the_worst_case_of_the_recurrence():
    worst = {0: 0, 1: 0}
    for n in range(2, 65):
        worst[n] = worst[n // 2] + worst[n - n // 2] + n - 1
        assert merge_sort_bound(n) == worst[n]
    assert [merge_sort_bound(n) for n in (2, 3, 4, 8, 16)] == [1, 3, 5, 17, 49]


@pytest.mark.parametrize("n", range(1, 8))
def test_merge_sort_orders_every_permutation_within_the_bound_and_reaches_it(n):
    ids = [f"c{i}" for i in range(n)]
    most = 0
    for order in itertools.permutations(range(n)):
        worth = dict(zip(ids, order))
        better, calls = counting(worth)
        ranked = asyncio.run(merge_sort(ids, better))
        assert ranked == sorted(ids, key=lambda i: -worth[i])
        assert len(calls) <= merge_sort_bound(n)
        most = max(most, len(calls))
    assert most == merge_sort_bound(n)  # the bound is tight


@pytest.mark.parametrize("n, m", [(4, 2), (5, 2), (6, 3), (8, 2), (16, 4), (3, 1)])
def test_a_refinement_ranking_reuses_the_parents_order(n, m):
    rng = random.Random(n * 100 + m)
    children = m * (n // m)
    for _ in range(50):
        parents = [f"p{i}" for i in range(m)]
        kids = [f"k{i}" for i in range(children)]
        worth = {c: rng.random() for c in parents + kids}
        parents.sort(key=lambda c: -worth[c])  # the previous ranking settled their order
        better, calls = counting(worth)
        ranked = asyncio.run(rank_pairwise(parents, kids, better))
        assert ranked == sorted(parents + kids, key=lambda c: -worth[c])
        assert len(calls) <= comparison_bound(m, children)
        assert not any({a, b} <= set(parents) for a, b in calls)  # parents are never re-compared
    # Never more than the seed's all-pairs ranking of the pool, C(m + c, 2).
    assert comparison_bound(m, children) <= (m + children) * (m + children - 1) // 2


def test_global_ranks_follow_the_seed():
    assert global_ranks(["a", "b", "c"], [], 3) == {"a": (1, None), "b": (2, None), "c": (3, None)}
    # Parents p1, p2; children above the worst parent rank in sequence, those below tie at N.
    ranked = ["k1", "p1", "k2", "p2", "k3", "k4"]
    assert global_ranks(ranked, ["p1", "p2"], 4) == {
        "k1": (1, None),
        "p1": (2, None),
        "k2": (3, None),
        "p2": (4, None),
        "k3": (4, "tied_at_floor"),
        "k4": (4, "tied_at_floor"),
    }


def _ranks(alignment: int, aesthetics: int) -> dict:
    return {"alignment": alignment, "aesthetics": aesthetics}


@pytest.mark.parametrize(
    "text, winner",
    [
        (json.dumps({"winner": "A", "reason": "x", "ranks": {"A": _ranks(1, 1), "B": _ranks(2, 2)}}), "A"),
        # The combined rank decides over the named winner, as the seed's compareTwo does.
        (json.dumps({"winner": "A", "reason": "x", "ranks": {"A": _ranks(2, 1), "B": _ranks(1, 2)}}), "B"),
        ('{"winner": "tie", "reason": "same"}', None),
        ('```json\n{"winner": "B", "reason": "b is sharper"}\n```', "B"),
    ],
)
def test_verdicts_are_read_as_the_seed_reads_them(text, winner):
    parsed = prompts.parse_verdict(text, alpha=0.7)
    assert parsed is not None and parsed[0] == winner


def test_an_unreadable_verdict_is_none():
    assert prompts.parse_verdict("I like the first one", 0.7) is None
    assert prompts.parse_verdict('{"reason": "no winner"}', 0.7) is None


def test_the_model_judge_undoes_its_swap():
    """Whatever order the images are shown in, "the first shown" maps back to the right side."""
    ctx = FakePipelineContext()
    a = ctx.save_artifact("a.png", b"\x89PNG a")
    b = ctx.save_artifact("b.png", b"\x89PNG b")
    shown: list[str] = []

    def reply(model, messages, params):
        first = messages[1]["content"][1]["image_url"]["url"]
        shown.append("a" if first.endswith(__import__("base64").b64encode(b"\x89PNG a").decode()) else "b")
        return json.dumps({"winner": "A", "reason": "first is better"})

    ctx.replies = [reply] * 8
    judge = ModelJudge(ctx, "judge-model", 0.7, 96)
    pairs = [("i0c0", "i0c1"), ("i0c2", "i0c3"), ("i1c0", "i0c1"), ("i1c1", "i1c2")]
    for x, y in pairs:
        verdict = asyncio.run(judge.compare("a fox", Entrant(id=x, image=a), Entrant(id=y, image=b)))
        assert verdict.winner == shown[-1] and verdict.reason == "first is better"
    assert set(shown) == {"a", "b"}  # both orders were used
    assert ctx.calls_to("chat")[0]["response_format"]["json_schema"]["name"] == "verdict"


# --- the pipeline with a test judge -------------------------------------------------------------


class KnownJudge:
    """Prefers the candidate whose image is longer in bytes; undecided on listed pairs."""

    name = "known"

    def __init__(self, ctx, undecided=frozenset()) -> None:
        self.ctx, self.undecided, self.calls = ctx, undecided, 0

    async def compare(self, prompt: str, a: Entrant, b: Entrant) -> Verdict:
        self.calls += 1
        if frozenset((a.id, b.id)) in self.undecided:
            return Verdict(winner=None, reason="cannot tell")
        wa, wb = self.worth(a), self.worth(b)
        return Verdict(winner="a" if wa > wb else "b", reason=f"{a.id}={wa} {b.id}={wb}")

    def worth(self, e: Entrant) -> int:
        return len(self.ctx.read_artifact(e.image))


@pytest.fixture
def known_judge(monkeypatch):
    made: list[KnownJudge] = []

    def factory(ctx, params):
        made.append(KnownJudge(ctx, frozenset({frozenset(("i0c0", "i0c1"))})))
        return made[-1]

    monkeypatch.setitem(JUDGES, "known", factory)
    return made


def params(**kw) -> BeamSearchParams:
    base = {"prompt": "a red apple", "width": 64, "height": 64, "seed": 3, "iterations": 3}
    return msgspec.convert({**base, **kw}, BeamSearchParams)


def test_pairwise_keeps_what_the_known_judge_prefers(known_judge):
    ctx = FakePipelineContext(default_reply='{"prompt": "an apple"}')
    result = asyncio.run(BeamSearch().run(params(ranking="pairwise", judge="known"), ctx))
    judge = known_judge[0]
    nodes = {}
    for kind, data in ctx.events:
        if kind == "lineage":
            nodes[data["id"]] = {**nodes.get(data["id"], {}), **data}
    worth = {i: len(ctx.read_artifact(n["image"])) for i, n in nodes.items()}
    comparisons = result["comparisons"]
    assert comparisons["by_iteration"] and all(
        got <= bound for got, bound in zip(comparisons["by_iteration"], comparisons["bound_by_iteration"])
    )
    assert judge.calls == comparisons["total"]
    # The one undecided pair fell back to the scores, and says so.
    fallback = [c for n in nodes.values() for c in n["comparisons"] if c["decided_by"] == "scores"]
    assert {c["opponent"] for c in fallback} == {"i0c0", "i0c1"}
    assert comparisons["undecided"] == 1
    kept0 = sorted((i for i, n in nodes.items() if 0 in n["kept_in"]), key=lambda i: -worth[i])
    assert len(kept0) == 2
    for k in (1, 2):
        pool = [i for i, n in nodes.items() if n["iteration"] == k or (k - 1) in n["kept_in"]]
        kept = {i for i, n in nodes.items() if k in n["kept_in"]}
        assert kept == set(sorted(pool, key=lambda i: -worth[i])[:2])
    assert result["winner"]["id"] == max((i for i, n in nodes.items() if 2 in n["kept_in"]), key=worth.get)
    # The verdicts are steps: a resumed run asks the judge nothing.
    resumed = ctx.resume()
    again = asyncio.run(BeamSearch().run(params(ranking="pairwise", judge="known"), resumed))
    assert again["winner"]["id"] == result["winner"]["id"] and known_judge[1].calls == 0


def test_a_failed_critique_fails_that_parents_children_only():
    def reply(model, messages, params):
        name = params["response_format"]["json_schema"]["name"]
        if name == "critique" and reply.critiques == 0:
            reply.critiques += 1
            raise ProviderError("the critic is out")
        if name == "critique":
            reply.critiques += 1
            return '{"critique": "ok", "recommendation": "more", "reason": "why"}'
        return '{"prompt": "an apple"}'

    reply.critiques = 0
    ctx = FakePipelineContext(replies=[reply] * 200)
    result = asyncio.run(BeamSearch().run(params(iterations=2, refine="alternate"), ctx))
    assert result["failed"] == 2 and result["failed_by_iteration"] == [0, 2]
    for failure in result["failures"]:
        assert failure["stage"] == "critique" and "the critic is out" in failure["message"]
    assert len(result["finalists"]) == 2


def test_unknown_judges_are_refused_when_the_params_are_decoded():
    with pytest.raises(msgspec.ValidationError, match="judge must be one of"):
        params(judge="oracle")


def test_scores_can_be_measured_against_each_candidates_own_prompt():
    for against in ("prompt", "combined"):
        ctx = FakePipelineContext(default_reply='{"prompt": "an apple, variant"}')
        asyncio.run(BeamSearch().run(params(iterations=1, score_against=against), ctx))
        texts = {call["text"] for call in ctx.calls_to("score")}
        prompts_made = {call["prompt"] for call in ctx.calls_to("generate_image")}
        assert texts == ({"a red apple"} if against == "prompt" else prompts_made)
