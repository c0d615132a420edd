"""Screens of the Loom TUI: dashboard, jobs, job detail, lineage, models and providers, log, batches."""

from .batches import BatchesScreen
from .dashboard import DashboardScreen
from .job_detail import JobDetailScreen
from .jobs import JobsScreen
from .lineage import LineageScreen
from .log import LogScreen
from .models import ModelsScreen

__all__ = [
    "BatchesScreen",
    "DashboardScreen",
    "JobDetailScreen",
    "JobsScreen",
    "LineageScreen",
    "LogScreen",
    "ModelsScreen",
]
