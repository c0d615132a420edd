"""Files the daemon serves back at ``/v1/files/<path>``: generated images and job outputs.

Paths handed to clients are relative to the data dir and must start with one of the public
folders (``images/``, ``output/``); :meth:`FileStore.resolve` refuses anything that would leave
them, so the job database and other state are never served.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loom.sdk.errors import ConfigError, NotFound

from .atomic import write_atomic

PUBLIC_FOLDERS = ("images", "output")


def check_writable(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and make sure Loom can write there; a ConfigError naming it
    stops start-up otherwise (rather than the first job failing, or a store refusing to open)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".loom-write-check-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"the data dir {data_dir} is not writable ({e.strerror or e}); "
            "choose another with --data-dir or [daemon] data_dir"
        ) from None


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        #: Whether the running request may read a file it names by URL (rel, the URL's query);
        #: set once the job store and the URL signer exist (``principals.file_reader``).
        self.may_read: Callable[[str, str], bool] = lambda rel, query: True

    def read_named(self, rel: str, query: str = "") -> bytes:
        """The bytes of a file a request names by its ``/v1/files/`` URL (an image to look at):
        NotFound, as for a file that is not there, where the caller may not read it."""
        if not self.may_read(rel, query):
            raise NotFound(f"No file at '{rel}'", param="path")
        return self.resolve(rel).read_bytes()

    def save(self, data: bytes, suffix: str = ".png", folder: str = "images") -> str:
        """Write ``data`` under a dated folder with an unguessable name; return its relative path."""
        rel = Path(folder) / time.strftime("%Y-%m-%d") / f"{secrets.token_hex(12)}{suffix}"
        write_atomic(self.root / rel, data)  # StorageError when the disk is full; never half a file
        return rel.as_posix()

    def listing(self, rel: str) -> list[tuple[str, int]]:
        """The files under the public folder ``rel`` (relative path, bytes), sorted: a job's output
        folder as its ``output_url`` shows it. NotFound for anything that is not such a folder."""
        path = (self.root / rel).resolve()
        public = any(path.is_relative_to(self.root / folder) for folder in PUBLIC_FOLDERS)
        if not public or not path.is_dir() or path == self.root:
            raise NotFound(f"No folder at '{rel}'", param="path")
        return sorted((f.relative_to(self.root).as_posix(), f.stat().st_size) for f in path.rglob("*") if f.is_file())

    def resolve(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        public = any(path.is_relative_to(self.root / folder) for folder in PUBLIC_FOLDERS)
        if not public or not path.is_file():
            raise NotFound(f"No file at '{rel}'", param="path")
        return path
