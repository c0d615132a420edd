"""Questions a job puts to a person: answered by a recorded preference (in either display
order), answered at once by an earlier preference of the same pair, None on timeout."""

from __future__ import annotations

import asyncio

import pytest
from loom.daemon.evaluations import EvaluationStore
from loom.daemon.questions import Questions
from loom.sdk.errors import Conflict


def side(cand):
    return {"candidate": cand, "image": f"output/j/{cand}.png"}


def full(cand):
    return {"job_id": "j", **side(cand), "prompt": "an owl"}


@pytest.fixture
def store(tmp_path):
    s = EvaluationStore(tmp_path / "e.db")
    yield s
    s.close()


async def test_a_recorded_preference_answers_the_waiting_question(store):
    questions = Questions(store)
    seen = []
    task = asyncio.create_task(questions.ask("j", "an owl", side("i0c0"), side("i0c1"), 5, on_wait=seen.append))
    await asyncio.sleep(0.01)
    (q,) = questions.pending("j")
    assert seen == [q] and q.view()["seconds_left"] > 4
    # Shown the other way round, the person prefers the left one: i0c1, the question's b.
    saved = store.add(full("i0c1"), full("i0c0"), "a", reason="rounder", source="judge", question_id=q.id)
    questions.answer(q.id, saved)
    answer = await task
    assert answer == {"winner": "b", "reason": "rounder", "evaluation_id": saved["id"]}
    assert questions.pending() == []
    with pytest.raises(Conflict):
        questions.sides(q.id)


async def test_an_earlier_preference_answers_at_once_and_a_tie_decides_nothing(store):
    store.add(full("i0c0"), full("i0c2"), "tie")
    answer = await asyncio.wait_for(Questions(store).ask("j", "an owl", side("i0c2"), side("i0c0"), 5), 1)
    assert answer["winner"] is None


async def test_nobody_answering_is_none_after_the_timeout(store):
    questions = Questions(store)
    assert await questions.ask("j", "an owl", side("i0c0"), side("i0c1"), 0.05) is None
    assert questions.pending() == []
