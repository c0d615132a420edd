"""Retention: finished jobs older than the retention period are deleted, with their folders.

Runs on the daemon's timer service (:mod:`loom.daemon.timers`), once shortly after start-up and
then every ``interval``, in a worker thread. A deleted job's retrieval entries go with it. Only finished jobs (succeeded, failed, cancelled) are removed:
``interrupted`` ones wait to be resumed, so an accepted job is never lost to clean-up.

Settings come from the config's ``[jobs]`` section: ``retention`` (default "30d"; "never" keeps
everything) and ``cleanup_interval`` (default "1h").
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import JobsConfig, parse_duration
from ..rag import RagStore
from ..timers import Timers
from .store import JobStore

log = logging.getLogger("loom.jobs")


@dataclass(frozen=True)
class RetentionPolicy:
    retention: float | None = 30 * 86400.0  # seconds; None keeps every job
    interval: float = 3600.0

    @classmethod
    def from_config(cls, jobs: JobsConfig) -> RetentionPolicy:
        keep = parse_duration(jobs.retention, "$.jobs.retention")
        every = parse_duration(jobs.cleanup_interval, "$.jobs.cleanup_interval")
        return cls(retention=keep, interval=max(1.0, every or 3600.0))


def clean_up(
    store: JobStore, root: Path, policy: RetentionPolicy, now: float | None = None, rag: RagStore | None = None
) -> list[str]:
    """Delete finished jobs past retention (rows, output folders and the retrieval entries they
    stored, which would otherwise point at deleted files); return their ids."""
    if policy.retention is None:
        return []
    cutoff = (now if now is not None else time.time()) - policy.retention
    output = (root / "output").resolve()
    removed = []
    for row in store.expired(cutoff):
        folder = (root / row["output_dir"]).resolve() if row["output_dir"] else None
        if folder is not None and folder.is_relative_to(output) and folder != output and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            _prune_empty(folder.parent, output)
        if rag is not None:
            rag.remove_job(row["id"])
        store.delete_job(row["id"])
        removed.append(row["id"])
    if removed:
        log.info("retention: deleted %d finished job(s) older than %ss", len(removed), policy.retention)
    return removed


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
        # A plain function: the timers run it in a thread, off the loop.
        timers.every(self.policy.interval, self.run_once, id=self.TIMER_ID, first=self.FIRST_RUN_S)

    def run_once(self) -> list[str]:
        try:
            return clean_up(self.store, self.root, self.policy, rag=self.rag)
        except Exception:  # a failed clean-up must never take the daemon down
            log.exception("retention clean-up failed")
            return []
