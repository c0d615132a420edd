"""A/B evaluations: which of two images a person preferred for a prompt, and why (seed 004's
evaluation page).

One SQLite table at ``<data_dir>/evaluations.db`` (sqlite-utils; ``[jobs] durability`` applies).
An image is named by its job and, for a pipeline that reports lineage (the beam search), its
candidate; a job named without a candidate stands for its winner. :func:`resolve_side` turns
such a name into the image's path, so the web page, ``POST /v1/evaluations`` and the beam
search's person judge record the same thing. ``GET /v1/evaluations`` lists them; ``/v1/evaluations/export`` writes them as JSONL. Each is
owned by the principal that recorded it (a user lists and exports its own; one recorded before
owners existed is the admin's), and a user may only compare its own jobs' images.
Questions a running job puts to a person are in :mod:`.questions`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec
from loom.sdk.errors import InvalidRequest, NotFound
from sqlite_utils import Database

from .durability import Durability, connect
from .principals import UNOWNED

Choice = Literal["a", "b", "tie"]
CHOICES: tuple[Choice, ...] = get_args(Choice)
MAX_REASON = 2000


class Side(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One of the two images: a job, and a candidate of its lineage (none: the job's winner)."""

    job_id: str
    candidate: str | None = None


class EvaluationRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /v1/evaluations``: the preference for one pair."""

    choice: Choice
    a: Side | None = None
    b: Side | None = None
    reason: str | None = None
    #: The prompt both images answer; defaults to job a's ``prompt`` parameter.
    prompt: str | None = None
    #: The id of a waiting question (``GET /v1/evaluations/questions``) this answers; its job
    #: goes on with the choice. ``a`` and ``b`` may then be left out (the question's own order).
    question: str | None = None


def resolve_side(runner, side: Side, param: str, owner: str | None = None) -> dict[str, Any]:
    """The image a side names: ``{"job_id", "candidate", "image", "prompt", "node"}``.

    A candidate must be a lineage node with an image. Without one, the job's winner: its
    lineage winner, else the last image the job saved (pipelines without lineage). ``owner`` (a
    user's scope): another's job is as if there were none."""
    job = runner.store.get_job(side.job_id)
    if job is None or (owner is not None and (job.get("owner") or UNOWNED) != owner):
        raise NotFound(f"No job with id '{side.job_id}'", param=f"{param}.job_id")
    nodes = runner.store.lineage(side.job_id)
    node = None
    if side.candidate is not None:
        node = next((n for n in nodes if str(n.get("id")) == side.candidate), None)
        if node is None:
            raise NotFound(f"job {side.job_id} has no candidate '{side.candidate}'", param=f"{param}.candidate")
    else:
        node = next((n for n in nodes if n.get("winner")), None)
    if node is not None:
        image = node.get("image")
        if not image:
            raise InvalidRequest(f"candidate '{node['id']}' of job {side.job_id} has no image yet", param=param)
        candidate = str(node["id"])
    else:
        images = [a for a in runner.store.artifacts(side.job_id) if a["media_type"].startswith("image/")]
        if not images:
            raise InvalidRequest(f"job {side.job_id} has no winner and no image to compare", param=param)
        image, candidate = images[-1]["path"], None
    params = job.get("params") or {}
    return {
        "job_id": side.job_id,
        "candidate": candidate,
        "image": image,
        "prompt": params.get("prompt") if isinstance(params, dict) else None,
        "node": node,
    }


class EvaluationStore:
    def __init__(self, path: Path, durability: Durability = "normal") -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.db = Database(connect(path, durability))
        with self._lock:
            self.db.table("evaluations").create(
                {
                    "id": str,
                    "created_at": float,
                    "prompt": str,
                    "a_job": str,
                    "a_candidate": str,
                    "a_image": str,
                    "b_job": str,
                    "b_candidate": str,
                    "b_image": str,
                    "choice": str,
                    "reason": str,
                    "source": str,
                    "question_id": str,
                    "owner": str,
                },
                pk="id",
                not_null={"created_at", "a_job", "a_image", "b_job", "b_image", "choice", "source"},
                if_not_exists=True,
            )
            # A store from before owners: its evaluations are the admin's (UNOWNED).
            if "owner" not in self.db.table("evaluations").columns_dict:
                self.db.table("evaluations").add_column("owner", str, not_null_default=UNOWNED)
            self.db.table("evaluations").create_index(["created_at"], if_not_exists=True)
            self.db.table("evaluations").create_index(["a_job"], if_not_exists=True)
            self.db.table("evaluations").create_index(["b_job"], if_not_exists=True)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def add(
        self,
        a: dict[str, Any],
        b: dict[str, Any],
        choice: str,
        *,
        reason: str | None = None,
        prompt: str | None = None,
        source: str = "api",
        question_id: str | None = None,
        owner: str = UNOWNED,
    ) -> dict[str, Any]:
        """Record one preference; ``a`` and ``b`` are :func:`resolve_side` results."""
        if choice not in CHOICES:
            raise InvalidRequest(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}", param="choice")
        reason = (reason or "").strip()
        if len(reason) > MAX_REASON:
            raise InvalidRequest(f"reason is longer than {MAX_REASON} characters", param="reason")
        row = {
            "id": "ev_" + secrets.token_hex(8),
            "created_at": time.time(),
            "prompt": prompt if prompt is not None else (a.get("prompt") or b.get("prompt") or ""),
            "a_job": a["job_id"],
            "a_candidate": a.get("candidate"),
            "a_image": a["image"],
            "b_job": b["job_id"],
            "b_candidate": b.get("candidate"),
            "b_image": b["image"],
            "choice": choice,
            "reason": reason or None,
            "source": source,
            "question_id": question_id,
            "owner": owner,
        }
        with self._lock:
            self.db.table("evaluations").insert(row)
        return view(row)

    def list(
        self, *, job_id: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``owner`` (a user's scope): that principal's only."""
        clauses, args = [], []
        if job_id:
            clauses.append("(a_job = ? or b_job = ?)")
            args += [job_id, job_id]
        if owner is not None:
            clauses.append("coalesce(owner, '') = ?")
            args.append(owner)
        where = "where " + " and ".join(clauses) if clauses else ""
        with self._lock:
            rows = list(
                self.db.query(
                    f"select * from evaluations {where} order by created_at desc, id limit ? offset ?",
                    [*args, limit, offset],
                )
            )
        return [view(r) for r in rows]

    def iter_all(self, owner: str | None = None) -> Iterator[dict[str, Any]]:
        """Every evaluation (``owner``: that principal's), oldest first (the export)."""
        where, args = ("where coalesce(owner, '') = ?", [owner]) if owner is not None else ("", [])
        with self._lock:
            rows = list(self.db.query(f"select * from evaluations {where} order by created_at, id", args))
        return (view(r) for r in rows)

    def judged_pairs(self, job_id: str) -> set[frozenset[str]]:
        """Candidate pairs of one job that already have a preference (either order)."""
        with self._lock:
            rows = self.db.query(
                "select a_candidate, b_candidate from evaluations where a_job = ? and b_job = ?", [job_id, job_id]
            )
            return {frozenset((r["a_candidate"], r["b_candidate"])) for r in rows}

    def find_pair(self, job_id: str, first: str | None, second: str | None) -> dict[str, Any] | None:
        """The latest preference between two candidates of one job, in either order."""
        with self._lock:
            rows = list(
                self.db.query(
                    "select * from evaluations where a_job = ? and b_job = ? and ((a_candidate = ? and b_candidate = ?) "
                    "or (a_candidate = ? and b_candidate = ?)) order by created_at desc limit 1",
                    [job_id, job_id, first, second, second, first],
                )
            )
        return view(rows[0]) if rows else None

    def count(self, owner: str | None = None) -> int:
        with self._lock:
            if owner is None:
                return self.db.table("evaluations").count
            return self.db.execute(
                "select count(*) from evaluations where coalesce(owner, '') = ?", [owner]
            ).fetchone()[0]


def view(row: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as the API shows it."""

    def side(prefix: str) -> dict[str, Any]:
        image = row[f"{prefix}_image"]
        return {
            "job_id": row[f"{prefix}_job"],
            "candidate": row[f"{prefix}_candidate"],
            "image": image,
            "image_url": f"/v1/files/{image}",
        }

    choice = row["choice"]
    return {
        "id": row["id"],
        "object": "evaluation",
        "created_at": row["created_at"],
        "prompt": row["prompt"],
        "a": side("a"),
        "b": side("b"),
        "choice": choice,
        "preferred": side(choice) if choice in ("a", "b") else None,
        "reason": row["reason"],
        "source": row["source"],
        "question": row["question_id"],
    }


def export_jsonl(store: EvaluationStore, owner: str | None = None) -> Iterator[bytes]:
    """One JSON object a line, oldest first."""
    for record in store.iter_all(owner):
        yield msgspec.json.encode(record) + b"\n"
