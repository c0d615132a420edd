"""Seed 004: a beam search job's Loom events as the seed's WebSocket messages.

The seed's worker sent ``started``, ``operation``, ``step``, ``candidate`` (with ``imageUrl``
``/api/images/<sessionId>/<file>``, ``whatPrompt``, ``howPrompt``, ``combined``, ``score``,
``parentId``), ``ranked``, ``iteration``, ``globalRanking``, then ``complete`` (``result.
bestCandidate`` and ``metadata``), ``error`` or ``cancelled``. Loom's beam search reports
``progress``, ``lineage`` (one candidate node, sent again as it changes), ``iteration`` and
``state`` events; :class:`SeedMessages` turns each into the seed's messages for one job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from loom.sdk.routes import JobEvent

from .answers import date_of, iso, session_of

#: Loom's beam search parameters -> the seed's names (``n``, ``m``, ...).
SEED_PARAMS = {
    "prompt": "prompt",
    "beam_width": "n",
    "keep_top": "m",
    "iterations": "iterations",
    "alpha": "alpha",
    "temperature": "temperature",
}


#: A candidate's step key (``i1c0/refine-what``) and the seed's stage names for its steps.
STEP_KEY = re.compile(r"^(i\d+c\d+)/([a-z-]+)$")
STAGES = (
    ("expand", "expand"),
    ("refine", "refine"),
    ("combine", "combine"),
    ("image", "imageGen"),
    ("score", "vision"),
)


def seed_params(params: dict[str, Any]) -> dict[str, Any]:
    return {seed: params.get(loom) for loom, seed in SEED_PARAMS.items()}


def image_url(session: str, path: str | None) -> str | None:
    return f"/api/images/{session}/{path.rsplit('/', 1)[-1]}" if path else None


class SeedMessages:
    """The seed's messages for one job's events, in order (one instance per subscriber)."""

    def __init__(
        self,
        job: dict[str, Any],
        providers: dict[str, str],
        job_now: Callable[[], dict[str, Any] | None],
        metadata_now: Callable[[], dict[str, Any]],
    ):
        self.session = session_of(job)
        self.date = date_of(job)
        self.params = job.get("params") or {}
        self.providers = dict(providers)
        self.job_now = job_now
        self.metadata_now = metadata_now
        #: lineage id -> (iteration, index in its iteration)
        self.index: dict[str, tuple[int, int]] = {}
        #: what was last sent for a candidate, so a node sent again unchanged sends nothing
        self.seen: dict[str, tuple[Any, ...]] = {}
        self.started = False

    def messages(self, event: JobEvent) -> list[dict[str, Any]]:
        ts = iso(event.created_at)
        data = event.data
        if event.type == "state":
            return self.state(data, ts)
        if event.type == "progress":
            return [
                {
                    "type": "operation",
                    "status": "processing",
                    "message": ": ".join(x for x in (data.get("stage"), data.get("message")) if x),
                    "progress": data.get("progress"),
                    "timestamp": ts,
                }
            ]
        if event.type == "lineage":
            return self.candidate(data, ts)
        if event.type == "step":
            return self.step(data, ts)
        if event.type == "iteration":
            return [
                {
                    "type": "iteration",
                    "iteration": data.get("iteration"),
                    "totalIterations": self.params.get("iterations"),
                    "candidatesCount": len(data.get("ranking") or []),
                    "bestScore": data.get("best_score") or 0,
                    "timestamp": ts,
                }
            ]
        return []

    def step(self, data: dict[str, Any], ts: str) -> list[dict[str, Any]]:
        """A candidate's finished step (``i0c1/image``) as the seed's ``step`` message."""
        key = str(data.get("key") or "")
        m = STEP_KEY.match(key)
        if m is None:
            return []
        candidate, what = m.group(1), m.group(2)
        stage = next((seed for prefix, seed in STAGES if what.startswith(prefix)), what)
        return [
            {
                "type": "step",
                "stage": stage,
                "status": "complete",
                "candidateId": candidate,
                "message": f"{candidate}: {what} done in {data.get('seconds', 0):.1f}s",
                "timestamp": ts,
            }
        ]

    def state(self, data: dict[str, Any], ts: str) -> list[dict[str, Any]]:
        state = data.get("state")
        if state == "running" and not self.started:
            self.started = True
            return [
                {"type": "started", "timestamp": ts, "params": seed_params(self.params), "providers": self.providers}
            ]
        if state == "succeeded":
            return [self.complete(ts)]
        if state == "cancelled":
            return [{"type": "cancelled", "timestamp": ts, "message": "Job was cancelled by user"}]
        if state in ("failed", "interrupted"):
            error = data.get("error") or {}
            return [{"type": "error", "timestamp": ts, "error": error.get("message") or f"job {state}"}]
        return []

    def candidate(self, node: dict[str, Any], ts: str) -> list[dict[str, Any]]:
        cid, iteration, index = node.get("id"), node.get("iteration"), node.get("index")
        if not isinstance(cid, str) or not isinstance(iteration, int) or not isinstance(index, int):
            return []
        self.index[cid] = (iteration, index)
        parent = self.index.get(node.get("parent") or "")
        signature = (node.get("image"), node.get("score"), node.get("rank"), node.get("global_rank"))
        if self.seen.get(cid) == signature or not node.get("image"):
            return []
        before = self.seen.get(cid)
        self.seen[cid] = signature
        out: list[dict[str, Any]] = []
        if before is None or before[:2] != signature[:2]:
            out.append(
                {
                    "type": "candidate",
                    "iteration": iteration,
                    "candidateId": index,
                    "parentId": parent[1] if parent else None,
                    "score": node.get("score"),
                    "ranking": {"rank": node["rank"]} if node.get("rank") is not None else None,
                    "imageUrl": image_url(self.session, node.get("image")),
                    "whatPrompt": node.get("what"),
                    "howPrompt": node.get("how"),
                    "combined": node.get("combined"),
                    "timestamp": ts,
                }
            )
        if node.get("rank") is not None and (before is None or before[2:] != signature[2:]):
            out.append(
                {
                    "type": "ranked",
                    "iteration": iteration,
                    "candidateId": index,
                    "rank": node["rank"],
                    "globalRank": node.get("global_rank"),
                    "globalRankNote": None,
                    "reason": None,
                    "timestamp": ts,
                }
            )
        return out

    def complete(self, ts: str) -> dict[str, Any]:
        job = self.job_now() or {}
        result = job.get("result") or {}
        winner = result.get("winner") or {}
        ranked = result.get("global_ranking") or []
        lineage = [
            {"iteration": step.get("iteration"), "candidateId": step.get("candidateId")}
            for step in (self.metadata_now().get("lineage") or [])
        ]
        return {
            "type": "complete",
            "timestamp": ts,
            "result": {
                "bestCandidate": {
                    "what": winner.get("what"),
                    "how": winner.get("how"),
                    "combined": winner.get("combined"),
                    "totalScore": winner.get("score"),
                    "imageUrl": image_url(self.session, winner.get("image")),
                }
            },
            "metadata": {
                "lineage": lineage,
                "sessionId": self.session,
                "userPrompt": self.params.get("prompt"),
                "finalWinner": {
                    "iteration": winner.get("iteration"),
                    "candidateId": winner.get("index"),
                    "totalScore": winner.get("score"),
                },
                "date": self.date,
                "allGlobalRanked": [
                    {
                        "iteration": r.get("iteration"),
                        "candidateId": r.get("localId"),
                        "globalRank": r.get("globalRank"),
                        "globalRankNote": r.get("globalRankNote"),
                        "imageUrl": f"/api/images/{self.session}/{r.get('candidateId')}.png",
                    }
                    for r in ranked
                ],
            },
        }
