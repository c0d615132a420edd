"""Retention: finished jobs older than the retention period are deleted, with their folders.

Runs on an APScheduler (3.x) ``AsyncIOScheduler`` interval job, once shortly after start-up and
then every ``interval``. Only finished jobs (succeeded, failed, cancelled) are removed:
``interrupted`` ones wait to be resumed, so an accepted job is never lost to clean-up.

Settings come from the config's ``[jobs]`` section: ``retention`` (default "30d"; "never" keeps
everything) and ``cleanup_interval`` (default "1h").
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ..config import JobsConfig, parse_duration
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


def clean_up(store: JobStore, root: Path, policy: RetentionPolicy, now: float | None = None) -> list[str]:
    """Delete finished jobs past retention (rows and output folders); return their ids."""
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


class RetentionSchedule:
    """The APScheduler job that runs :func:`clean_up`; started in the daemon's lifespan."""

    def __init__(self, store: JobStore, root: Path, policy: RetentionPolicy) -> None:
        self.store, self.root, self.policy = store, root, policy
        self.scheduler = None

    def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler()
        # A plain function: APScheduler's asyncio executor runs it in a thread, off the loop.
        self.scheduler.add_job(
            self.run_once,
            "interval",
            seconds=self.policy.interval,
            id="loom-job-retention",
            next_run_time=datetime.now() + timedelta(seconds=5),
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()

    def run_once(self) -> list[str]:
        try:
            return clean_up(self.store, self.root, self.policy)
        except Exception:  # a failed clean-up must never take the daemon down
            log.exception("retention clean-up failed")
            return []

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None
