"""The scheduler: what is resident, what runs next, on which device."""

from .core import Priority, Scheduler

__all__ = ["Priority", "Scheduler"]
