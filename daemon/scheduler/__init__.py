"""The scheduler: what is resident, what runs next, on which device, in which worker.

``core`` (the Scheduler, composed of:) ``dispatch`` (admission, queues, what starts),
``residency`` (loads, evictions, unloads, keep-alive), ``execution`` (one item on its worker);
``state`` (one device's record), ``devices`` (discovery and budgets), ``ledger`` (memory
accounting), ``policy`` (order and eviction), ``queues`` (work items), ``snapshot``, ``events``
and ``metrics`` (seeing it). Where models run is :mod:`loom.daemon.workers`.
"""

from .core import Scheduler, current_work_id
from .queues import Priority, current_principal, current_queue_position

__all__ = ["Priority", "Scheduler", "current_principal", "current_queue_position", "current_work_id"]
