"""The seed's records: ``metadata.json`` fields and ``rankings.json``, with the seed's field names.

The seed's MetadataTracker wrote ``iterations[].candidates[]`` with ``candidateId`` (the index in
its iteration), ``parentId``, ``whatPrompt``, ``howPrompt``, ``combined``, ``critique``,
``status``, ``image {url, localPath}``, ``evaluation {alignmentScore, aestheticScore, analysis}``,
``totalScore``, ``survived``, ``comparisons``; then ``finalWinner {iteration, candidateId,
totalScore}`` and ``lineage [{iteration, candidateId}]``. Its ImageRanker wrote ``rankings.json``
(``iterations.{k}.rankings / comparisons.directComparisons / globalRanked`` and
``finalGlobalRanking``). Loom writes the same names, so the seed's tools read Loom's folders, and
adds a few of its own beside them (``id``, ``parent``, ``parentIteration`` since a Loom parent may
be older than the previous iteration, ``error`` for a failed candidate, ``rank``, ``globalRank``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .lineage import Candidate


def _critique(critique: dict[str, dict[str, str]] | None) -> dict[str, Any] | None:
    """The seed kept one critique object per candidate; with both dimensions refined, the two
    are joined (and kept apart under ``byDimension``)."""
    if not critique:
        return None
    dims = list(critique)
    if len(dims) == 1:
        return {**critique[dims[0]], "dimension": dims[0]}
    joined = {
        field: " ".join(f"{d.upper()}: {critique[d].get(field, '')}" for d in dims)
        for field in ("critique", "recommendation", "reason")
    }
    return {**joined, "dimension": "+".join(dims), "byDimension": critique}


def _status(c: Candidate) -> str:
    if c.failed:
        return "failed"
    return "completed" if c.score is not None else "attempted"


def candidate(c: Candidate, by_id: Mapping[str, Candidate], negative_prompt: str | None) -> dict[str, Any]:
    parent = by_id.get(c.parent) if c.parent else None
    evaluation: dict[str, Any] | None = None
    if c.clip is not None and c.aesthetic is not None:
        evaluation = {
            "alignmentScore": round(100.0 * c.clip, 4),
            "aestheticScore": c.aesthetic,
            "analysis": c.description,
            "strengths": [],
            "weaknesses": [],
        }
    return {
        "candidateId": c.index,
        "parentId": parent.index if parent else None,
        "parentIteration": parent.iteration if parent else None,
        "id": c.id,
        "parent": c.parent,
        "whatPrompt": c.what,
        "howPrompt": c.how,
        "combined": c.combined or None,
        "negativePrompt": negative_prompt,
        "negativePromptMetadata": None,
        "critique": _critique(c.critique),
        "status": _status(c),
        "image": {"url": f"/v1/files/{c.image}", "localPath": c.image} if c.image else None,
        "evaluation": evaluation,
        "totalScore": c.score,
        "survived": c.iteration in c.kept_in,
        "keptIn": list(c.kept_in),
        "rank": c.rank,
        "globalRank": c.global_rank,
        "comparisons": [
            {
                "opponentId": x["opponent"],
                "result": x["result"],
                "myRanks": x.get("my_ranks"),
                "opponentRanks": x.get("opponent_ranks"),
                "reason": x.get("reason", ""),
                "decidedBy": x["decided_by"],
                "iteration": x["iteration"],
            }
            for x in c.comparisons
        ],
        "aggregatedFeedback": None,
        "error": c.error,
    }


def metadata(
    candidates: Mapping[str, Candidate],
    rankings: Mapping[int, dict[str, Any]],
    dimensions: Mapping[int, str],
    *,
    user_prompt: str,
    negative_prompt: str | None,
    winner: Candidate | None,
) -> dict[str, Any]:
    """The fields the pipeline sets in ``metadata.json`` (``ctx.set_metadata``)."""
    iterations = []
    for k in sorted({c.iteration for c in candidates.values()}):
        own = [c for c in candidates.values() if c.iteration == k]
        order = rankings.get(k, {}).get("order", [])
        best = next((candidates[i] for i in order if candidates[i].iteration == k), None)
        iterations.append(
            {
                "iteration": k,
                "dimension": dimensions.get(k),
                "candidates": [candidate(c, candidates, negative_prompt) for c in sorted(own, key=lambda c: c.index)],
                "bestCandidateId": best.index if best else None,
                "bestScore": best.score if best else None,
                "failed": sum(1 for c in own if c.failed),
            }
        )
    path: list[Candidate] = []
    current = winner
    while current is not None:
        path.append(current)
        current = candidates.get(current.parent) if current.parent else None
    return {
        "userPrompt": user_prompt,
        "iterations": iterations,
        "finalWinner": None
        if winner is None
        else {"iteration": winner.iteration, "candidateId": winner.index, "totalScore": winner.score, "id": winner.id},
        "lineage": [{"iteration": c.iteration, "candidateId": c.index, "id": c.id} for c in reversed(path)],
    }


def rankings_json(
    session_id: str,
    candidates: Mapping[str, Candidate],
    rankings: Mapping[int, dict[str, Any]],
    final: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The seed's ``rankings.json``: each iteration's ranking, comparisons and global ranks."""
    out: dict[str, Any] = {"sessionId": session_id, "iterations": {}}
    for k, r in sorted(rankings.items()):
        entries = []
        for position, cid in enumerate(r["order"], 1):
            c = candidates[cid]
            mine = [x for x in c.comparisons if x["iteration"] == k]
            entries.append(
                {
                    "candidateId": cid,
                    "rank": position,
                    "wins": sum(1 for x in mine if x["result"] == "win"),
                    "losses": sum(1 for x in mine if x["result"] == "loss"),
                    "reason": next((x["reason"] for x in reversed(mine) if x["result"] == "win"), None),
                    "totalScore": c.score,
                }
            )
        out["iterations"][str(k)] = {
            "rankings": entries,
            "comparisons": {
                "directComparisons": [
                    {
                        "idA": v["a"],
                        "idB": v["b"],
                        "winner": "A" if v["winner_id"] == v["a"] else "B",
                        "ranksA": (v.get("ranks") or {}).get("a"),
                        "ranksB": (v.get("ranks") or {}).get("b"),
                        "reason": v.get("reason", ""),
                        "decidedBy": v["decided_by"],
                        "judge": v.get("judge"),
                    }
                    for v in r.get("comparisons", [])
                ]
            },
            "globalRanked": [
                {"candidateId": cid, "globalRank": rank, "globalRankNote": note}
                for cid, (rank, note) in r.get("global", {}).items()
            ],
        }
    if final is not None:
        out["finalGlobalRanking"] = final
    return out
