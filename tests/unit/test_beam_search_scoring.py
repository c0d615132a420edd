"""The beam search's pure parts: reading weak models' answers, scoring, ranking, sharing children."""

from __future__ import annotations

import pytest
from loom.plugins.beam_search import prompts
from loom.plugins.beam_search.lineage import Candidate
from loom.plugins.beam_search.ranking import children_per_parent, dimensions, rank, total_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"prompt": "a red apple"}', "a red apple"),
        ('```json\n{"prompt": "a red apple"}\n```', "a red apple"),
        ('Sure! Here it is: {"prompt": "a red apple"} Hope it helps.', "a red apple"),
        ('{"prompt": "a red apple on a tab', "a red apple on a tab"),  # cut by max_tokens
        ('{"prompt": "say \\"hi\\" twice"}', 'say "hi" twice'),
        ("Prompt: a red apple, soft light", "a red apple, soft light"),
        ('"a red apple"', "a red apple"),
        ('{"prompt": ""}', None),
        ('{"other": 1}', None),
        ("", None),
    ],
)
def test_parse_prompt_is_lenient(text, expected):
    assert prompts.parse_prompt(text) == expected


def test_parse_prompt_cuts_long_answers():
    assert len(prompts.parse_prompt('{"prompt": "' + "word " * 500 + '"}')) <= prompts.PROMPT_LIMIT


def test_parse_critique_needs_critique_and_recommendation():
    full = '{"critique": "too dark", "recommendation": "brighter light", "reason": "aesthetics"}'
    assert prompts.parse_critique(full) == {
        "critique": "too dark",
        "recommendation": "brighter light",
        "reason": "aesthetics",
    }
    assert prompts.parse_critique('{"critique": "too dark", "recommendation": "brigh')["recommendation"] == "brigh"
    assert prompts.parse_critique('{"critique": "too dark"}') is None
    assert prompts.parse_critique("no json at all") is None


@pytest.mark.parametrize(
    "alignment, aesthetic, dim, word",
    [(90, 1, "what", "small"), (10, 9, "how", "small"), (65, 0, "what", "specific"), (10, 2, "how", "revision")],
)
def test_rule_critique_follows_the_relevant_score(alignment, aesthetic, dim, word):
    c = prompts.rule_critique(alignment, aesthetic, dim)
    assert word in (c["critique"] + c["recommendation"] + c["reason"]).lower()
    assert dim.upper() in c["recommendation"]


def test_messages_ask_for_json_and_carry_the_request():
    msgs = prompts.expand_messages("what", "a red apple", 1)
    assert msgs[0]["role"] == "system" and '"prompt"' in msgs[0]["content"]
    assert "a red apple" in msgs[1]["content"]
    assert prompts.expand_messages("what", "x", 0) != prompts.expand_messages("what", "x", 1)
    fmt = prompts.response_format("prompt", prompts.PROMPT_SCHEMA)
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["prompt"]
    crit = prompts.critique_messages("req", "w", "h", "c", 55.0, 6.5, "a dark image", "how", 2)
    assert "55.0/100" in crit[1]["content"] and "6.5/10" in crit[1]["content"] and "HOW" in crit[0]["content"]


def test_score_puts_clip_and_aesthetic_on_one_scale():
    assert total_score(1.0, 10.0, 0.3) == pytest.approx(100.0)
    assert total_score(0.5, 0.0, 1.0) == pytest.approx(50.0)
    assert total_score(0.0, 7.0, 0.0) == pytest.approx(70.0)
    assert total_score(0.4, 6.0, 0.7) == pytest.approx(0.7 * 40 + 0.3 * 60)


def test_rank_breaks_ties_deterministically():
    def cand(it, idx, score, clip):
        c = Candidate(iteration=it, index=idx)
        c.score, c.clip = score, clip
        return c

    a, b, c, d = cand(1, 0, 50, 0.2), cand(0, 3, 50, 0.2), cand(1, 1, 50, 0.9), cand(1, 2, 70, 0.1)
    assert [x.id for x in rank([a, b, c, d])] == ["i1c2", "i1c1", "i0c3", "i1c0"]


@pytest.mark.parametrize("n, m, each", [(4, 2, 2), (5, 2, 2), (3, 3, 1), (2, 1, 2), (4, 3, 1), (16, 5, 3)])
def test_each_parent_gets_the_seeds_share_of_children(n, m, each):
    # The seed's expansion ratio floor(N/M): M * floor(N/M) children, N when M divides N.
    assert children_per_parent(n, m) == each


def test_refinement_alternates_like_the_seed():
    assert [dimensions(k, "alternate") for k in (1, 2, 3)] == [("what",), ("how",), ("what",)]
    assert dimensions(2, "both") == ("what", "how")


# --- the whole pipeline on the SDK's fake context ---------------------------------------------------


def test_declaration_passes_the_sdk_checks():
    import loom.plugins.beam_search as plugin
    from loom.sdk.testing import pipeline_problems

    assert pipeline_problems(plugin.BeamSearch, plugin=plugin) == []


def test_runs_and_resumes_on_the_fake_context_with_unreadable_llm_answers():
    import asyncio

    import msgspec
    from loom.plugins.beam_search import BeamSearch, BeamSearchParams
    from loom.sdk.testing import FakePipelineContext

    params = msgspec.convert(
        {
            "prompt": "a red apple",
            "beam_width": 3,
            "keep_top": 2,
            "iterations": 2,
            "width": 64,
            "height": 64,
            "seed": 1,
        },
        BeamSearchParams,
    )
    # A model that ignores the JSON format entirely: every answer falls back or is read as text.
    ctx = FakePipelineContext(
        default_reply="I cannot do that {", routes={"chat": "llm", "image": "img", "vision": "vis"}
    )
    result = asyncio.run(BeamSearch().run(params, ctx))
    # 3 at iteration 0, then floor(3/2) = 1 child for each of the 2 parents.
    assert result["candidates"] == 5 and result["winner"]["score"] is not None
    assert all(n["combined"] for n in [result["winner"], *result["finalists"]])
    resumed = ctx.resume()
    again = asyncio.run(BeamSearch().run(params, resumed))
    assert again["winner"]["id"] == result["winner"]["id"]
    assert resumed.calls == []  # nothing redone: every round's outcome was stored
