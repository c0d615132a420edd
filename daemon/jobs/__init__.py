"""Durable pipeline jobs: the SQLite job store, the runner, the pipeline context, retention.

``jobs_lifespan(loom)`` is the app's lifespan hook: it collects the registered pipelines, opens
``<data_dir>/loom.db``, marks jobs a dead daemon left running as ``interrupted``, schedules
retention, and on shutdown leaves running jobs ``interrupted`` for a later resume.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from .retention import RetentionPolicy, RetentionSchedule
from .runner import JobRunner, PipelineInfo, collect_pipelines
from .store import JobStore

DB_NAME = "loom.db"

__all__ = ["JobRunner", "JobStore", "PipelineInfo", "collect_pipelines", "jobs_lifespan"]


def jobs_lifespan(loom):
    @asynccontextmanager
    async def lifespan(app):
        pipelines = collect_pipelines(loom.pm, loom.plugins)
        store = JobStore(loom.config.data_dir / DB_NAME)
        runner = JobRunner(loom, store, pipelines)
        runner.start()
        retention = RetentionSchedule(store, loom.files.root, RetentionPolicy.from_config(loom.config.jobs))
        retention.start()
        loom.jobs = runner
        try:
            yield
        finally:
            retention.stop()
            await runner.stop()
            loom.jobs = None
            store.close()

    return lifespan
