"""Whether llama.cpp may repack weights into its CPU "extra buffer types" (AMX tiles, and the
interleaved Q4_0/Q4_K/IQ4_NL layouts), llama.cpp's ``use_extra_bufts`` model parameter (its
server's ``--no-repack`` turns it off).

A llama.cpp built natively on a CPU that advertises AMX (``amx_tile`` in /proc/cpuinfo) puts
Q4_0/Q4_1/Q8_0 weights in AMX buffers; on the sandboxed VMs this project is built and tested on,
whose Xeons advertise AMX, the first batched decode (two tokens or more) then dies with SIGSEGV,
while one token at a time works. So the default is: repack, unless the CPU advertises AMX; a
model's ``repack = true`` turns it back on where AMX is known to work (a bare-metal Sapphire
Rapids), ``repack = false`` turns it off anywhere.

Nothing here imports llama_cpp at module level.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@functools.cache
def amx_advertised(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_tile" in line for line in text.splitlines())


def repack_enabled(option: bool | None) -> bool:
    """The model option ``repack``, with None resolved as the module docstring says."""
    return (not amx_advertised()) if option is None else option


_patching = threading.Lock()


@contextmanager
def model_params(repack: bool) -> Iterator[None]:
    """While it is held, ``llama_cpp.Llama(...)`` builds its model with ``use_extra_bufts =
    repack`` (``Llama`` has no argument for it: its model parameters come from
    ``llama_model_default_params``, which is wrapped for the duration)."""
    import llama_cpp.llama_cpp as low  # what llama_cpp.llama (Llama) calls it through

    with _patching:
        default = low.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = repack
            return p

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = default
