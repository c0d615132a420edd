"""Model workers: where a loaded model runs, behind one seam (:mod:`.base`).

``inprocess`` runs it in the daemon's process (the mock, remote providers, tests); ``subprocess``
runs each loaded model in a worker process of its own (:mod:`.process`, :mod:`.child`), talking
over a socket (:mod:`.wire`). This package imports nothing of the scheduler: a worker process
imports it too, and stays light until its model loads.
"""

from .base import Executor, LoadReport, Work, Worker, WorkerExit, WorkerMemory, WorkerSpec

__all__ = ["Executor", "LoadReport", "Work", "Worker", "WorkerExit", "WorkerMemory", "WorkerSpec", "make_executors"]


def make_executors() -> dict[str, Executor]:
    """One executor of each kind, by name (what ``[scheduler] executor`` and a model's
    ``executor`` name)."""
    from .inprocess import InProcessExecutor
    from .process import ProcessExecutor

    return {InProcessExecutor.name: InProcessExecutor(), ProcessExecutor.name: ProcessExecutor()}
