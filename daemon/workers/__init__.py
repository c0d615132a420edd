"""Model workers: where a loaded model runs, behind one seam (:mod:`.base`).

``inprocess`` runs it in the daemon's process (the mock, remote providers, tests); ``subprocess``
runs each loaded model in a worker process of its own (:mod:`.process`, :mod:`.child`), talking
over a socket (:mod:`.wire`); ``ray`` runs it in an actor on a Ray cluster (:mod:`.ray_executor`,
:mod:`.ray_actor`, :mod:`.ray_cluster`). This package imports nothing of the scheduler: a worker process
imports it too, and stays light until its model loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .base import ClusterExecutor, Executor, LoadReport, NodeInfo, Work, Worker, WorkerExit, WorkerMemory, WorkerSpec

if TYPE_CHECKING:
    from ..config import SchedulerConfig

__all__ = [
    "ClusterExecutor",
    "Executor",
    "LoadReport",
    "NodeInfo",
    "Work",
    "Worker",
    "WorkerExit",
    "WorkerMemory",
    "WorkerSpec",
    "make_executors",
]


def make_executors(config: SchedulerConfig | None = None, wanted: Iterable[str] = ()) -> dict[str, Executor]:
    """One executor of each kind, by name (what ``[scheduler] executor`` and a model's
    ``executor`` name). The Ray executor only when the config or a model (``wanted``) asks for
    it: without it, Ray is never imported."""
    from .inprocess import InProcessExecutor
    from .process import ProcessExecutor

    executors: dict[str, Executor] = {
        InProcessExecutor.name: InProcessExecutor(),
        ProcessExecutor.name: ProcessExecutor(),
    }
    if config is not None and (config.executor == "ray" or "ray" in set(wanted)):
        from .ray_executor import RayExecutor

        executors[RayExecutor.name] = RayExecutor(config.ray)
    return executors
