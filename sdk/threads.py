"""CPU threads for a model runtime: the cores this process may use, and how many to give a model.

llama.cpp's and torch's own defaults both miss on a small or shared machine. llama-cpp-python
takes half the *logical* CPUs (one thread on a 2-core machine: half the machine idle), torch
takes every core it sees, including those a container's CPU quota or the affinity mask keeps
from it. Loom counts the cores it may really run on instead: the affinity mask, capped by a
cgroup CPU quota, with SMT siblings counted once (compute-bound kernels gain nothing from a
core's second hyperthread and lose to its contention).

How many of those go to the model (:func:`runtime_threads`) was measured on a 2-core machine
with SmolLM2 streaming through the daemon (README, benchmark 11): both cores streamed 1.26x the
tokens of one for one stream and 1.45x for four, although the daemon's share of a stream (an
SSE event per token) has to fit between decode steps. From 8 cores on, one core is left to the
daemon and the other workers, where it costs a model an eighth of its speed at most. When other
work takes the cores, llama.cpp's batch loop falls back by itself (``plugins/llamacpp/tuning.py``).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

#: From this many cores on, one is left to the daemon (HTTP, SSE, other workers).
RESERVE_FROM = 8
CPU_SYSFS = Path("/sys/devices/system/cpu")
CGROUP = Path("/sys/fs/cgroup")


@cache
def usable_cores() -> int:
    """Physical cores this process may run on (at least 1)."""
    return count_cores(_allowed_cpus(), CPU_SYSFS, CGROUP)


def count_cores(cpus: list[int], sysfs: Path, cgroup: Path) -> int:
    """Distinct cores that the logical CPUs ``cpus`` lie on (topology from ``sysfs``), capped by
    the CPU quota of the ``cgroup`` folder."""
    cores = _physical(cpus, sysfs)
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        cores = min(cores, max(1, int(quota + 0.5)))
    return max(1, cores)


def runtime_threads(requested: int | None = None) -> int:
    """Threads a model runtime should compute with: ``requested`` when given (a model's own
    setting), else the usable cores less one for the daemon from :data:`RESERVE_FROM` cores on."""
    if requested is not None and requested > 0:
        return requested
    cores = usable_cores()
    return cores - 1 if cores >= RESERVE_FROM else cores


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _physical(cpus: list[int], sysfs: Path) -> int:
    """How many distinct cores ``cpus`` (logical CPU numbers) lie on."""
    seen: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return _physical_fallback(len(cpus))
        seen.add((package, core))
    return len(seen) or 1


def _physical_fallback(logical: int) -> int:
    """Without sysfs: scale the allowed CPUs by the machine's physical/logical ratio."""
    try:
        import psutil

        physical, total = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    except ImportError:
        return logical
    if not physical or not total:
        return logical
    return max(1, logical * physical // total)


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs a cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us``) quota allows, None if unlimited."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
