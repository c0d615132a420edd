"""Questions a running job puts to a person: "which of these two images is better?".

A pipeline asks through ``ctx.ask_preference`` (the beam search's person judge does); the
question waits here, is listed on the web UI's evaluation page and at
``GET /v1/evaluations/questions``, and is answered by recording a preference for it (the page's
form, or ``POST /v1/evaluations`` with ``"question"``). The answer is an ordinary evaluation
(``source = "judge"``), so it is listed and exported with the others. A pair of the same job
that a person already judged answers at once from the store. Nobody answering within the
timeout is an answer too: None, and the pipeline decides by itself (the beam search by scores).

Questions live in memory: a daemon that stops leaves the job interrupted, and the resumed job
asks again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loom.sdk.errors import Conflict, InvalidRequest

if TYPE_CHECKING:
    from .evaluations import EvaluationStore


@dataclass
class Question:
    id: str
    job_id: str
    prompt: str
    #: The two images: ``{"job_id", "candidate", "image"}``.
    a: dict[str, Any]
    b: dict[str, Any]
    created_at: float
    deadline: float
    answer: asyncio.Future = field(repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "evaluation.question",
            "job_id": self.job_id,
            "prompt": self.prompt,
            "a": {**self.a, "image_url": f"/v1/files/{self.a['image']}"},
            "b": {**self.b, "image_url": f"/v1/files/{self.b['image']}"},
            "created_at": self.created_at,
            "expires_at": self.deadline,
            "seconds_left": max(0.0, round(self.deadline - time.time(), 1)),
        }


def verdict_for(question: Question, evaluation: dict[str, Any]) -> dict[str, Any]:
    """What the asking pipeline gets: the winner as the question named the sides."""
    preferred = evaluation.get("preferred")
    winner = None
    if preferred is not None:
        key = (preferred["job_id"], preferred["candidate"])
        winner = "a" if key == (question.a["job_id"], question.a["candidate"]) else "b"
    return {"winner": winner, "reason": evaluation.get("reason") or "", "evaluation_id": evaluation["id"]}


class Questions:
    def __init__(self, store: EvaluationStore) -> None:
        self.store = store
        self._pending: dict[str, Question] = {}

    def pending(self, job_id: str | None = None) -> list[Question]:
        """Waiting questions, the one with the least time left first."""
        items = [q for q in self._pending.values() if job_id is None or q.job_id == job_id]
        return sorted(items, key=lambda q: q.deadline)

    def get(self, question_id: str) -> Question | None:
        return self._pending.get(question_id)

    async def ask(
        self, job_id: str, prompt: str, a: dict[str, Any], b: dict[str, Any], timeout: float, on_wait=None
    ) -> dict[str, Any] | None:
        """Wait for a person's choice between ``a`` and ``b`` (``{"candidate", "image"}`` of job
        ``job_id``); None after ``timeout`` seconds. ``on_wait(question)`` is called once the
        question is listed (to tell the job's watchers)."""
        if not timeout > 0:
            raise InvalidRequest(f"a question needs a positive timeout, got {timeout!r}")
        a = {"job_id": job_id, "candidate": a.get("candidate"), "image": a["image"]}
        b = {"job_id": job_id, "candidate": b.get("candidate"), "image": b["image"]}
        earlier = self.store.find_pair(job_id, a["candidate"], b["candidate"])
        now = time.time()
        question = Question(
            id="q_" + secrets.token_hex(6),
            job_id=job_id,
            prompt=prompt,
            a=a,
            b=b,
            created_at=now,
            deadline=now + timeout,
            answer=asyncio.get_running_loop().create_future(),
        )
        if earlier is not None:
            return verdict_for(question, earlier)
        self._pending[question.id] = question
        try:
            if on_wait is not None:
                on_wait(question)
            return await asyncio.wait_for(asyncio.shield(question.answer), timeout)
        except TimeoutError:
            return None
        finally:
            self._pending.pop(question.id, None)

    def sides(self, question_id: str) -> Question:
        question = self._pending.get(question_id)
        if question is None:
            raise Conflict(
                f"question '{question_id}' is not waiting: it was answered, it timed out, or its job ended",
                param="question",
            )
        return question

    def answer(self, question_id: str, evaluation: dict[str, Any]) -> None:
        """Hand a recorded evaluation to the job waiting on the question."""
        question = self._pending.get(question_id)
        if question is not None and not question.answer.done():
            question.answer.set_result(verdict_for(question, evaluation))
