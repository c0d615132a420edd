"""How many CPU threads a model runtime gets (loom.sdk.threads), on machines described in fake
sysfs and cgroup trees: SMT siblings count once, the affinity mask and a CPU quota cap it, and
from RESERVE_FROM cores on one is left to the daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loom.sdk import threads


def machine(root: Path, cores: int, smt: int = 1) -> Path:
    """A sysfs cpu folder: ``cores`` cores with ``smt`` logical CPUs each (siblings numbered
    core, core + cores, ... as Linux numbers them)."""
    sysfs = root / "cpu"
    for core in range(cores):
        for sibling in range(smt):
            topology = sysfs / f"cpu{core + sibling * cores}" / "topology"
            topology.mkdir(parents=True)
            (topology / "physical_package_id").write_text("0\n")
            (topology / "core_id").write_text(f"{core}\n")
    return sysfs


def test_hyperthreads_count_once(tmp_path):
    sysfs = machine(tmp_path, cores=4, smt=2)
    assert threads.count_cores(list(range(8)), sysfs, tmp_path / "no-cgroup") == 4


def test_the_affinity_mask_limits_the_cores(tmp_path):
    sysfs = machine(tmp_path, cores=8, smt=2)
    # CPUs 0 and 8 are one core's two hyperthreads; 1 is another core.
    assert threads.count_cores([0, 8, 1], sysfs, tmp_path / "no-cgroup") == 2


@pytest.mark.parametrize(("cpu_max", "expected"), [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 6)])
def test_a_cgroup_quota_caps_the_cores(tmp_path, cpu_max, expected):
    sysfs = machine(tmp_path, cores=6)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text(cpu_max)
    assert threads.count_cores(list(range(6)), sysfs, cgroup) == expected


def test_cgroup_v1_quota(tmp_path):
    sysfs = machine(tmp_path, cores=16)
    v1 = tmp_path / "cgroup" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.count_cores(list(range(16)), sysfs, tmp_path / "cgroup") == 4


def test_without_topology_the_logical_count_is_scaled(tmp_path):
    assert 1 <= threads.count_cores([0, 1, 2, 3], tmp_path / "missing", tmp_path / "no-cgroup") <= 4


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (4, 4), (7, 7), (8, 7), (32, 31)])
def test_the_daemon_keeps_a_core_on_big_machines(monkeypatch, cores, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    assert threads.runtime_threads() == expected
    assert threads.runtime_threads(None) == expected


def test_a_models_own_setting_wins(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    assert threads.runtime_threads(3) == 3
    assert threads.runtime_threads(40) == 40  # oversubscribing is the user's call


def test_this_machine():
    cores = threads.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert 1 <= threads.runtime_threads() <= cores
