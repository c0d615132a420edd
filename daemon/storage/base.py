"""The output store interface: where generated images and job artefacts go besides the data dir.

The data dir is always the working copy (pipelines read artefacts back, a resumed job finds
them, the web UI shows them); an output store is where they are *published*: after a file is
written locally, :meth:`OutputStore.put` copies it to the store, and the URLs Loom hands out
point at the store (:meth:`OutputStore.url`). A store that fails raises
:class:`~loom.sdk.errors.StorageError` (507, ``storage_error``); the local file stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class OutputStore(Protocol):
    #: For logs and the start-up banner ("local", "s3://bucket/prefix").
    name: str

    def put(self, rel: str, path: Path, media_type: str) -> None:
        """Publish the local file ``path`` under the data-dir-relative name ``rel``. Blocking
        (called on a worker thread); :class:`~loom.sdk.errors.StorageError` when it cannot."""
        ...

    def url(self, rel: str, ttl: float) -> str | None:
        """A URL a browser can GET ``rel`` from for ``ttl`` seconds, or None when the daemon
        serves it itself (a signed ``/v1/files/`` URL)."""
        ...

    def close(self) -> None: ...
