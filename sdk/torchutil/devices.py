"""Devices and dtypes: what ``device`` and ``dtype`` in a ``[[models]]`` entry mean for torch.

``dtype = "auto"`` is bfloat16 on a CUDA device that supports it, else float16; on the CPU it is
always float32 (half precision there is slow and partly unimplemented), whatever was asked.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import ProviderError

log = logging.getLogger("loom.torch")

DTYPES = ("float32", "float16", "bfloat16")


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when there is a GPU, else "cpu"; a named device must exist."""
    import torch

    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ProviderError(
                f"device {device!r} was asked for but CUDA is not available "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ProviderError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
        return device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ProviderError("device 'mps' was asked for but Metal is not available")
        return device
    raise ProviderError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(name: str, device: str) -> Any:
    """The torch dtype for ``name`` ("auto", "float32", "float16", "bfloat16") on ``device``."""
    import torch

    if not device.startswith(("cuda", "mps")):
        if name not in ("auto", "float32"):
            log.warning("dtype %s is not used on %s; loading in float32", name, device)
        return torch.float32
    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if name not in DTYPES:
        raise ProviderError(f"unknown dtype {name!r}: use auto, {', '.join(DTYPES)}")
    return getattr(torch, name)


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def set_cpu_threads(requested: int | None) -> int:
    """Set torch's intra-op threads for a model on the CPU: ``requested`` (the model's ``threads``)
    or the physical cores this process may use (:func:`loom.sdk.threads.runtime_threads`), not
    torch's own count, which ignores CPU quotas. Process-wide: a model worker is a process of
    its own; in the daemon's process (``executor = "inprocess"``) the last model loaded sets it."""
    import torch

    from ..threads import runtime_threads

    threads = runtime_threads(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
