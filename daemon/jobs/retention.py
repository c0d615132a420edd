"""Retention and pruning: finished jobs older than a period are deleted, with their folders.

What a user generated is kept until the user deletes it: by default (``[jobs] retention =
"never"``) nothing is removed on a schedule. Retention is an explicit setting: with ``retention =
"30d"`` it runs on the daemon's timer service (:mod:`loom.daemon.timers`), once shortly after
start-up and then every ``cleanup_interval``, in a worker thread, and ``loom serve`` says so at
start-up. ``loom jobs prune --older-than 30d`` and ``POST /admin/jobs/prune`` do the same once,
on request (``dry_run`` lists what would go).

Only finished jobs (succeeded, failed, cancelled) are removed: ``interrupted`` ones wait to be
resumed, so an accepted job is never lost to clean-up. A removed job's retrieval entries stay
(seed 001's memory only grows) unless ``[jobs] rag = "delete"`` (or a prune's ``rag``) says
otherwise; a kept entry whose file is gone is searched as before and answered with
``file_missing``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from loom.sdk.errors import ConfigError, InvalidRequest

from ..config import JobsConfig, parse_duration
from ..rag import RagStore
from ..timers import Timers
from .store import JobStore

log = logging.getLogger("loom.jobs")


@dataclass(frozen=True)
class RetentionPolicy:
    retention: float | None = None  # seconds; None keeps every job
    interval: float = 3600.0
    #: Whether a removed job's retrieval entries go with it.
    delete_rag: bool = False

    @classmethod
    def from_config(cls, jobs: JobsConfig) -> RetentionPolicy:
        keep = parse_duration(jobs.retention, "$.jobs.retention")
        every = parse_duration(jobs.cleanup_interval, "$.jobs.cleanup_interval")
        return cls(retention=keep, interval=max(1.0, every or 3600.0), delete_rag=jobs.rag == "delete")

    def describe(self) -> str | None:
        """What ``loom serve`` says at start-up when retention is on (None when it is off)."""
        if self.retention is None:
            return None
        entries = "deleted with them" if self.delete_rag else "kept"
        return (
            f"job retention is on: finished jobs older than {_span(self.retention)} are deleted with their "
            f"outputs every {_span(self.interval)} (retrieval entries: {entries}); "
            '[jobs] retention = "never" keeps them'
        )


def clean_up(
    store: JobStore, root: Path, policy: RetentionPolicy, now: float | None = None, rag: RagStore | None = None
) -> list[str]:
    """Delete finished jobs past retention (rows and output folders; their retrieval entries only
    when the policy says so); return their ids."""
    if policy.retention is None:
        return []
    removed = [
        row["id"] for row in prune(store, root, policy.retention, now=now, rag=rag if policy.delete_rag else None)
    ]
    if removed:
        log.info("retention: deleted %d finished job(s) older than %s", len(removed), _span(policy.retention))
    return removed


def prune(
    store: JobStore,
    root: Path,
    older_than: float,
    *,
    now: float | None = None,
    rag: RagStore | None = None,
    dry_run: bool = False,
) -> list[dict]:
    """Remove finished jobs that finished more than ``older_than`` seconds ago: their rows, output
    folders and (when ``rag`` is given) retrieval entries. Returns what was (with ``dry_run``:
    would be) removed, oldest first: ``{id, pipeline, state, finished_at, output_dir,
    rag_entries}`` (the entries removed; None when they are kept)."""
    cutoff = (now if now is not None else time.time()) - older_than
    output = (root / "output").resolve()
    rows = sorted(store.expired(cutoff), key=lambda r: r["finished_at"] or 0.0)
    out = []
    for row in rows:
        entries: int | None = None
        if dry_run:
            entries = rag.count_job(row["id"]) if rag is not None else None
        else:
            folder = (root / row["output_dir"]).resolve() if row["output_dir"] else None
            if folder is not None and folder.is_relative_to(output) and folder != output and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                _prune_empty(folder.parent, output)
            if rag is not None:
                entries = rag.remove_job(row["id"])
            store.delete_job(row["id"])
        out.append({**row, "rag_entries": entries})
    return out


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent


class Retention:
    """:func:`clean_up` as a timer: registered with the daemon's timers by the services factory."""

    TIMER_ID = "loom-job-retention"
    #: The first clean-up waits this long, so start-up is not slowed by it.
    FIRST_RUN_S = 5.0

    def __init__(self, store: JobStore, root: Path, policy: RetentionPolicy, rag: RagStore | None = None) -> None:
        self.store, self.root, self.policy, self.rag = store, root, policy, rag

    def schedule(self, timers: Timers) -> None:
        if self.policy.retention is None:
            return  # kept until the user deletes it: nothing to run
        # A plain function: the timers run it in a thread, off the loop.
        timers.every(self.policy.interval, self.run_once, id=self.TIMER_ID, first=self.FIRST_RUN_S)

    def run_once(self) -> list[str]:
        try:
            return clean_up(self.store, self.root, self.policy, rag=self.rag)
        except Exception:  # a failed clean-up must never take the daemon down
            log.exception("retention clean-up failed")
            return []


def parse_older_than(value: str | float) -> float:
    """Seconds from a duration; "never" or a negative one is refused (it would remove nothing)."""
    try:
        seconds = parse_duration(value, "older_than")
    except ConfigError as e:
        raise InvalidRequest(str(e), param="older_than") from None
    if seconds is None:
        raise InvalidRequest("older_than must be a duration such as '30d'", param="older_than")
    return seconds
