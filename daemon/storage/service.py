"""``Storage``: the daemon's service for the files it hands out (``services.storage``).

- **URLs.** :meth:`Storage.url` is the URL an answer carries for a data-dir-relative file: a
  signed, expiring ``/v1/files/<path>?exp=...&sig=...`` (:mod:`.signing`), or with an S3 output
  store a presigned URL to the object; both last ``[storage] url_ttl``. :meth:`Storage.sign_tree`
  rewrites the ``/v1/files/...`` URLs a stored job result or record holds the same way, when it
  is shown.
- **Publishing.** Files are always written to the data dir first (the working copy: pipelines
  read artefacts back, resume needs them, nothing is lost when the store is away); then
  :meth:`Storage.publish` (awaited: ``/v1/images/generations``) or :meth:`Storage.batch` (a job's
  artefacts, uploaded in the background while the job goes on, and waited for when it ends)
  copy them to the output store. A store that cannot be written fails the request or job with
  ``storage_error`` (507).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import mimetypes
from pathlib import Path
from typing import Any

from loom.sdk.errors import ConfigError, StorageError

from ..config import parse_duration
from .base import OutputStore
from .config import StorageConfig
from .local import LocalStore
from .signing import PREFIX, URLSigner, load_secret

log = logging.getLogger("loom.storage")


def open_store(config: StorageConfig) -> OutputStore:
    """The configured output store (ConfigError: start-up stops)."""
    if config.backend == "s3":
        from .s3 import S3Store

        return S3Store(config, parse_duration(config.timeout, "$.storage.timeout") or 10.0)
    return LocalStore()


class Storage:
    def __init__(self, root: Path, signer: URLSigner, store: OutputStore, workers: int = 4) -> None:
        self.root = root
        self.signer = signer
        self.store = store
        #: True when files are published somewhere besides the data dir.
        self.remote = not isinstance(store, LocalStore)
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="loom-storage") if self.remote else None
        )

    @classmethod
    def open(cls, data_dir: Path, config: StorageConfig) -> Storage:
        ttl = parse_duration(config.url_ttl, "$.storage.url_ttl")
        if not ttl or ttl <= 0:
            raise ConfigError(
                f"$.storage.url_ttl: file URLs need a lifetime like '60s' or '1h', not {config.url_ttl!r}"
            )
        storage = cls(Path(data_dir).resolve(), URLSigner(load_secret(data_dir), ttl), open_store(config))
        if storage.remote:
            log.info("outputs are published to %s; file URLs last %gs", storage.store.name, ttl)
        return storage

    @property
    def ttl(self) -> float:
        return self.signer.ttl

    # --- URLs ---------------------------------------------------------------------------------

    def url(self, rel: str, base: str = "") -> str:
        """The URL an answer carries for ``rel``; ``base`` (``http://host:port``) makes a
        ``/v1/files`` URL absolute (a presigned URL is absolute already)."""
        rel = rel.lstrip("/")
        if self.remote:
            presigned = self.store.url(rel, self.ttl)
            if presigned is not None:
                return presigned
        return base + self.signer.sign(rel)

    def sign_tree(self, value: Any) -> Any:
        """``value`` (JSON-like) with every ``/v1/files/<path>`` string replaced by :meth:`url`;
        a folder (ending in ``/``) or a URL already signed is left as it is."""
        if isinstance(value, str):
            if value.startswith(PREFIX) and not value.endswith("/") and "?" not in value:
                return self.url(value[len(PREFIX) :])
            return value
        if isinstance(value, dict):
            return {k: self.sign_tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.sign_tree(v) for v in value]
        return value

    # --- publishing ---------------------------------------------------------------------------

    def _put(self, rel: str) -> None:
        path = self.root / rel
        self.store.put(rel, path, mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    def submit(self, rel: str) -> concurrent.futures.Future[None] | None:
        """Start publishing ``rel`` on the storage threads (None with no output store)."""
        if self._pool is None:
            return None
        return self._pool.submit(self._put, rel)

    async def publish(self, rel: str) -> None:
        """Publish ``rel`` now; :class:`StorageError` when the store cannot take it."""
        future = self.submit(rel)
        if future is not None:
            await asyncio.wrap_future(future)

    def publish_quietly(self, rel: str) -> None:
        """Publish ``rel`` in the background; a failure is logged (a job's ``metadata.json``)."""
        future = self.submit(rel)
        if future is not None:
            future.add_done_callback(_log_failure)

    def batch(self) -> Batch:
        return Batch(self)

    def close(self) -> None:
        """Wait for uploads under way (each bounded by the store's timeout), then close."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.store.close()


class Batch:
    """A job's uploads: started as its artefacts are saved, waited for when it ends. A failed
    upload fails the job's next save at once (:meth:`check`) or, at the latest, its end."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._futures: dict[str, concurrent.futures.Future[None]] = {}

    def add(self, rel: str) -> None:
        self.check()
        if rel in self._futures:
            self._futures[rel].cancel()  # an artefact saved again: the newer content wins
        future = self.storage.submit(rel)
        if future is not None:
            self._futures[rel] = future

    def __contains__(self, rel: str) -> bool:
        return rel in self._futures

    def check(self) -> None:
        """Raise the first upload that has failed so far."""
        for future in self._futures.values():
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise _storage_error(future.exception())

    async def wait(self) -> None:
        """Wait for every upload; :class:`StorageError` when one failed."""
        for future in list(self._futures.values()):
            if future.cancelled():
                continue
            try:
                await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                raise _storage_error(e) from None


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("%s", future.exception())


def _storage_error(e: BaseException | None) -> StorageError:
    if isinstance(e, StorageError):
        return e
    return StorageError(f"Could not publish a file to the output store: {e}")
