"""Devices the scheduler places models on, and their memory budgets.

CUDA devices are found through NVML (``nvidia-ml-py``, part of the base install): the daemon sees
the GPUs and their memory without torch, so a llama.cpp model can be placed on one. Where NVML is
missing, torch is asked instead, and only when it is already imported or the config names a
``cuda*`` device (in ``[scheduler.devices]`` or on a model): starting the daemon for CPU or
remote models never imports it. The CPU's total is read from ``/proc/meminfo`` (capped by a cgroup
limit when there is one).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from ..config import Config, DeviceBudget, parse_size
from ..workers.memory import total_memory as cpu_total
from ..workers.nvml import Nvml

log = logging.getLogger("loom.scheduler")

REMOTE = "remote"


@dataclass
class Device:
    """One place models run: ``cpu``, ``cuda:N`` or ``remote`` (no memory accounting)."""

    name: str
    kind: str  # "cpu", "cuda", "remote"
    total: int | None  # bytes the device has, None when unknown or unlimited
    budget: int | None  # bytes models may hold, None = unlimited
    headroom: int = 0
    parallel: bool = False  # different models may run at once
    available: bool = True
    reason: str = ""  # why it is not available
    #: The cluster node it belongs to (None: the daemon's own machine); its name is "NODE/DEVICE".
    node: str | None = None

    @property
    def index(self) -> int:
        return int(self.name.partition(":")[2] or 0) if self.kind == "cuda" else 0


def normalize(name: str) -> str:
    """ "cuda" -> "cuda:0"; other names unchanged (lower-cased)."""
    name = name.strip().lower()
    return "cuda:0" if name == "cuda" else name


def _torch_totals() -> dict[int, int] | None:
    """Total memory of each CUDA device via torch, or None when torch or CUDA is missing."""
    try:
        import torch  # only reached when torch is loaded already or a cuda device is configured
    except Exception:  # ImportError, or a broken install
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return {i: int(torch.cuda.get_device_properties(i).total_memory) for i in range(torch.cuda.device_count())}
    except Exception as e:  # driver errors
        log.warning("CUDA is present but unusable: %s", e)
        return None


def device_budget(name: str, cfg: DeviceBudget, total: int | None) -> tuple[int | None, int]:
    """(bytes models may hold, headroom) for a device of ``total`` bytes under ``cfg``."""
    where = f"$.scheduler.devices.{name}"
    headroom = parse_size(cfg.headroom, f"{where}.headroom")
    if cfg.budget.strip().endswith("%"):
        if not total:
            return None, headroom
        budget = parse_size(cfg.budget, f"{where}.budget", allow_percent=True, total=total)
    else:
        budget = parse_size(cfg.budget, f"{where}.budget")
    return max(0, budget - headroom), headroom


def discover(config: Config, model_devices: set[str], nvml: Nvml | None = None) -> tuple[dict[str, Device], str]:
    """Every device the config or a model names, the GPUs that NVML (or an imported torch) sees,
    the CPU and ``remote``.

    Returns the devices and the one that ``device = "auto"`` means: the first configured CUDA
    device when the config names one and it exists, else the CPU.
    """
    # "NODE/DEVICE" keys are for the devices of cluster nodes (``placement``).
    configured = {normalize(k): v for k, v in config.scheduler.devices.items() if "/" not in k}
    wanted = set(configured) | {normalize(d) for d in model_devices if d != "auto"} | {"cpu"}
    totals = (nvml if nvml is not None else Nvml()).totals()
    if totals is None and (any(d.startswith("cuda") for d in wanted) or "torch" in sys.modules):
        totals = _torch_totals()
    if totals:
        wanted |= {f"cuda:{i}" for i in totals}  # show every GPU there is
    devices: dict[str, Device] = {}
    for name in sorted(wanted):
        cfg = configured.get(name, DeviceBudget())
        if name == "cpu":
            total = cpu_total() or None
            allowed, headroom = device_budget(name, cfg, total)
            devices[name] = Device(name, "cpu", total, allowed, headroom, cfg.parallel)
        elif name.startswith("cuda"):
            device = Device(name, "cuda", None, None, 0, cfg.parallel)
            try:
                index = int(name.partition(":")[2] or 0)
            except ValueError:
                device.available, device.reason = False, f"not a CUDA device name: {name!r}"
                devices[name] = device
                continue
            if totals is None or index not in totals:
                device.available = False
                device.reason = "CUDA is not available" if totals is None else f"no CUDA device {index}"
            else:
                device.total = totals[index]
                device.budget, device.headroom = device_budget(name, cfg, device.total)
            devices[name] = device
        else:
            devices[name] = Device(name, "unknown", None, None, available=False, reason=f"unknown device {name!r}")
    devices[REMOTE] = Device(REMOTE, "remote", None, None, 0, parallel=True)
    auto = next((n for n in sorted(configured) if n.startswith("cuda") and devices[n].available), "cpu")
    return devices, auto
