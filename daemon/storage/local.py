"""The default output store: the data dir alone; files are served by ``/v1/files`` (signed URLs)."""

from __future__ import annotations

from pathlib import Path


class LocalStore:
    """Nothing to publish: the file Loom wrote in the data dir is the output."""

    name = "local"

    def put(self, rel: str, path: Path, media_type: str) -> None:
        return None

    def url(self, rel: str, ttl: float) -> str | None:
        return None

    def close(self) -> None:
        return None
