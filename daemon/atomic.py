"""Atomic file writes: a reader, or a crash midway, sees the old file or the new one, never half.

The data goes to a temporary file in the same folder (so the rename stays on one filesystem),
which then replaces the target in one ``os.replace``. Temporary names are unique, so two writers
of one file never trip over each other's temporary; a failed write leaves no temporary behind.

``LOOM_FAULT_DISK_FREE_BYTES=N`` in the daemon's environment makes every write of more than N
bytes write N and fail with ``ENOSPC``, as on a disk with N bytes free. It is how the full-disk
tests reach the 507 path where mounting a small filesystem is not allowed (CI without
``CAP_SYS_ADMIN``); unset, as in any real deployment, writes are plain ``write_bytes``.
"""

from __future__ import annotations

import errno
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loom.sdk.errors import StorageError


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
    """Write ``data`` to ``path`` atomically, creating its folder if needed. A disk that is full
    or not writable is a :class:`~loom.sdk.errors.StorageError` naming the file (the temporary
    is removed, so nothing half-written is left)."""
    try:
        with replacing(path) as tmp:
            _write(tmp, data)
    except OSError as e:
        raise storage_error(e, path) from e


def _write(tmp: Path, data: bytes) -> None:
    free = os.environ.get("LOOM_FAULT_DISK_FREE_BYTES")
    if free is None or len(data) <= int(free):
        tmp.write_bytes(data)
        return
    tmp.write_bytes(data[: int(free)])  # what a full disk takes before it refuses the rest
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))


#: What a full disk (or quota, or file size limit) says.
FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_error(e: OSError, path: Path) -> StorageError:
    """``e`` (raised writing ``path``) as the error a client is shown."""
    if e.errno in FULL:
        return StorageError(f"No space left on the device to write {path}: free some space in the data dir")
    return StorageError(f"Cannot write {path}: {e.strerror or e}")


def secret_file(path: Path) -> bytes:
    """A signing secret kept in ``path``, made on first start: written atomically through a
    temporary file that ``mkstemp`` creates owner-only (0600), so it is whole or absent and never
    readable by others; a short one (a torn write from before) is replaced."""
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        secret = b""
    if len(secret) >= 32:
        return secret
    secret = secrets.token_hex(32).encode()
    write_atomic(path, secret)
    return secret
