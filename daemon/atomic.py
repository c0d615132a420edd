"""Atomic file writes: a reader, or a crash midway, sees the old file or the new one, never half.

The data goes to a temporary file in the same folder (so the rename stays on one filesystem),
which then replaces the target in one ``os.replace``. Temporary names are unique, so two writers
of one file never trip over each other's temporary; a failed write leaves no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` when the
    block ends without an error (for writers that take a file name, such as faiss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating its folder if needed."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
