"""How hard the SQLite stores work to keep a committed write: ``[jobs] durability``.

Every store (jobs, records, responses, retrieval) is SQLite in WAL mode, opened by
:func:`connect`, which sets ``PRAGMA synchronous`` from the setting:

- ``"normal"`` (the default): a committed write survives the daemon crashing or being killed
  (SIGKILL, OOM killer); a power cut or kernel crash may lose the last transactions before the
  WAL is synced (the database itself stays consistent).
- ``"full"``: the WAL is synced at every commit, so a committed write survives a power cut too,
  at the cost of an fsync per write (a job's every event and progress report).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

Durability = Literal["normal", "full"]
DURABILITIES: tuple[str, ...] = ("normal", "full")


def connect(path: Path, durability: Durability = "normal", **kw) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``synchronous`` set for ``durability``; the
    keyword arguments go to :func:`sqlite3.connect` (``check_same_thread`` is off: the stores
    share one connection behind a lock)."""
    check_durability(durability)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, **kw)
    conn.execute("pragma journal_mode=wal")
    conn.execute(f"pragma synchronous={durability.upper()}")
    return conn


def check_durability(durability: str) -> str:
    """``durability``, or ValueError when it is not one of :data:`DURABILITIES`."""
    if durability not in DURABILITIES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITIES)}, got {durability!r}")
    return durability
