"""``metadata.json`` in every job's output folder (the seed's MetadataTracker).

Written defensively: at every progress report and at every end (success, failure, cancel,
interruption), so a folder always says what was attempted. Lineage nodes a pipeline reported are
grouped by ``iteration`` (when they have one) with the best candidate of each, and the winner's
path from its root is spelled out, as the seed's tracker did.

A pipeline may set fields of its own with ``ctx.set_metadata`` (beam search writes the seed's
``iterations`` / ``finalWinner`` / ``lineage`` records that way, so the seed's tools read them);
they replace the generic ones of the same name. The daemon's own facts (ids, state, timings,
usage, artefacts, result, error) cannot be replaced.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from .lineage import build_tree

NAME = "metadata.json"
#: Fields only the daemon writes; a pipeline's ``set_metadata`` cannot replace them.
DAEMON_FIELDS = frozenset(
    {
        "sessionId",
        "jobId",
        "pipeline",
        "timestamp",
        "state",
        "stage",
        "progress",
        "config",
        "tokenUsage",
        "timings",
        "artifacts",
        "result",
        "error",
    }
)


def build(job: dict, nodes: list[dict], artifacts: list[dict], steps: tuple[int, float]) -> dict[str, Any]:
    tree = build_tree(nodes)
    params = job.get("params") or {}
    meta: dict[str, Any] = {
        "sessionId": Path(job["output_dir"]).name,
        "jobId": job["id"],
        "pipeline": job["pipeline"],
        "timestamp": _iso(job["created_at"]),
        "state": job["state"],
        "stage": job.get("stage"),
        "progress": job.get("progress"),
        "userPrompt": params.get("prompt") if isinstance(params, dict) else None,
        "config": params,
        "iterations": _iterations(nodes),
        "finalWinner": None,
        "lineage": tree["path"],
        "tokenUsage": job.get("usage") or {},
        "timings": {
            "created": _iso(job["created_at"]),
            "started": _iso(job.get("started_at")),
            "finished": _iso(job.get("finished_at")),
            "steps": steps[0],
            "stepSeconds": round(steps[1], 3),
            "runSeconds": (job.get("timings") or {}).get("run_seconds"),
        },
        "artifacts": [a["path"] for a in artifacts if not a["path"].endswith(NAME)],
        "result": job.get("result"),
        "error": job.get("error"),
    }
    winner = tree["winner"]
    if winner is not None:
        node = next(n for n in nodes if str(n["id"]) == winner)
        meta["finalWinner"] = {
            "candidateId": winner,
            "iteration": node.get("iteration"),
            "totalScore": node.get("score"),
        }
    for key, value in (job.get("metadata") or {}).items():
        if key not in DAEMON_FIELDS:
            meta[key] = value
    return meta


def write(root: Path, job: dict, meta: dict[str, Any]) -> tuple[str, bytes]:
    """Write ``metadata.json`` atomically; return its relative path and bytes."""
    rel = f"{job['output_dir']}/{NAME}"
    path = root / rel
    data = json.dumps(meta, indent=2, ensure_ascii=False, default=str).encode()
    write_atomic(path, data)
    return rel, data


def _iterations(nodes: list[dict]) -> list[dict]:
    groups: dict[int, list[dict]] = {}
    for node in nodes:
        if isinstance(node.get("iteration"), int):
            groups.setdefault(node["iteration"], []).append(node)
    out = []
    for i in sorted(groups):
        scored = [n for n in groups[i] if isinstance(n.get("score"), (int, float))]
        best = max(scored, key=lambda n: n["score"], default=None)
        out.append(
            {
                "iteration": i,
                "dimension": groups[i][0].get("dimension"),
                "candidates": groups[i],
                "bestCandidateId": best["id"] if best else None,
                "bestScore": best["score"] if best else None,
            }
        )
    return out


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))
        + f"{t % 1:.3f}"[1:]
        + time.strftime("%z", time.localtime(t))
    )
