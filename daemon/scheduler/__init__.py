"""The scheduler: what is resident, what runs next, on which device.

``core`` (the Scheduler), ``devices`` (discovery and budgets), ``ledger`` (memory accounting),
``policy`` (order and eviction), ``queues`` (work items), ``residency`` (load/unload operations),
``executor`` (where provider code runs), ``events`` and ``metrics`` (seeing it).
"""

from .core import Scheduler, current_work_id
from .queues import Priority

__all__ = ["Priority", "Scheduler", "current_work_id"]
