"""Durable pipeline jobs: the SQLite job store, the runner, the pipeline context, retention.

The services factory (:mod:`loom.daemon.services`) collects the registered pipelines, opens
``<data_dir>/loom.db`` and registers retention with the timers; starting the runner marks jobs a
dead daemon left running as ``interrupted`` and resumes the interrupted ones
(``[jobs] resume_interrupted``), and stopping it leaves running jobs ``interrupted``
for a later resume.
"""

from __future__ import annotations

from .runner import JobRunner, PipelineInfo, collect_pipelines
from .store import JobStore

__all__ = ["JobRunner", "JobStore", "PipelineInfo", "collect_pipelines"]
