"""NVIDIA's management library (NVML, through ``nvidia-ml-py``): which CUDA devices exist, their
memory, and the GPU memory each process holds, without torch or a CUDA context.

Every method answers None (or nothing) when NVML is missing or fails, so the CPU-only install
behaves as if there were no GPU. Tests hand in a fake module (``Nvml(module=fake)``).

Device numbers are CUDA's (``cuda:N``): with ``CUDA_VISIBLE_DEVICES`` set (indices or UUIDs),
``cuda:N`` is the N-th device listed there. NVML numbers devices in PCI bus order, which is
CUDA's order with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (and whenever the GPUs are of one model).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("loom.scheduler")


class Nvml:
    def __init__(self, module: Any = None) -> None:
        self._nvml = module
        self._ready: bool | None = None
        self._handles: dict[int, Any] = {}

    def _init(self) -> bool:
        if self._ready is None:
            self._ready = False
            try:
                if self._nvml is None:
                    import pynvml

                    self._nvml = pynvml
                self._nvml.nvmlInit()
                self._ready = True
            except Exception as e:  # no library, no driver, no device
                log.debug("NVML is not available: %s", e)
        return self._ready

    def _handle(self, index: int) -> Any | None:
        """The NVML handle of CUDA device ``index`` (after CUDA_VISIBLE_DEVICES)."""
        if not self._init():
            return None
        if index in self._handles:
            return self._handles[index]
        nvml = self._nvml
        handle = None
        try:
            visible = _visible_devices()
            if visible is None:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            elif index < len(visible):
                ref = visible[index]
                handle = nvml.nvmlDeviceGetHandleByIndex(int(ref)) if ref.isdigit() else _by_uuid(nvml, ref)
        except Exception as e:
            log.debug("NVML has no device %d: %s", index, e)
        self._handles[index] = handle
        return handle

    def count(self) -> int:
        if not self._init():
            return 0
        try:
            total = int(self._nvml.nvmlDeviceGetCount())
        except Exception:
            return 0
        visible = _visible_devices()
        return total if visible is None else min(total, len(visible))

    def totals(self) -> dict[int, int] | None:
        """Total memory of each CUDA device by index; None when NVML sees no device."""
        out = {}
        for i in range(self.count()):
            info = self._memory(i)
            if info is not None:
                out[i] = int(info.total)
        return out or None

    def used(self, index: int) -> int | None:
        """Bytes in use on the device, by every process."""
        info = self._memory(index)
        return None if info is None else int(info.used)

    def _memory(self, index: int) -> Any | None:
        handle = self._handle(index)
        if handle is None:
            return None
        try:
            return self._nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception:
            return None

    def processes(self, index: int) -> dict[int, int] | None:
        """GPU bytes per process id on the device (compute and graphics contexts); None when NVML
        cannot list them. A process NVML cannot size counts 0."""
        handle = self._handle(index)
        if handle is None:
            return None
        out: dict[int, int] = {}
        try:
            listed = list(self._nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        except Exception:
            return None
        try:
            listed += list(self._nvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
        except Exception:
            pass
        for p in listed:
            out[int(p.pid)] = max(out.get(int(p.pid), 0), int(p.usedGpuMemory or 0))
        return out


def _visible_devices() -> list[str] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _by_uuid(nvml: Any, ref: str) -> Any | None:
    for i in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        uuid = nvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        if uuid == ref or uuid.startswith(ref):
            return handle
    return None


class GpuMeter:
    """GPU memory one process holds on one device: its own entry in NVML's process list, or,
    where NVML lists processes under other ids (a container's PID namespace), the device's use
    since ``start()`` (loads are one at a time per device, so the change is this process's)."""

    def __init__(self, nvml: Nvml, index: int, pid: int) -> None:
        self.nvml, self.index, self.pid = nvml, index, pid
        self.baseline: int | None = None

    def start(self) -> None:
        self.baseline = self.nvml.used(self.index)

    def read(self) -> int | None:
        listed = self.nvml.processes(self.index)
        if listed is not None and self.pid in listed:
            return listed[self.pid]
        used = self.nvml.used(self.index)
        if used is None or self.baseline is None:
            return None
        return max(0, used - self.baseline)
