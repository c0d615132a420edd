"""The retrieval store: embeddings of finished stories and images, searched for similar ones.

Layout under ``<data_dir>/rag/``:

- ``rag.db`` (SQLite, WAL): the truth. ``indices`` has one row per (collection, model) pair, since
  vectors of different embedding models are not comparable; ``items`` has one row per stored
  item: its vector (float32 blob), position ``seq`` in its index, kind, text, artefact path, job,
  free ``meta`` and its owner (the principal that added it, or whose job did; rows from before
  owners existed are the admin's). A search for a user (``owner``) ranks that user's rows only,
  exactly, from their vectors in the database; an admin's search (no owner) uses the index.
- ``<collection>--<model>-<hash>.faiss``: each index as FAISS wrote it, a cache of the rows.

At start-up the indices are loaded in a background thread (the daemon answers at once; a search
waits for its index): each ``.faiss`` file is read and the rows added after it was written are
added again, so a crash loses nothing but time. A missing or unreadable file is rebuilt from the
rows. When a collection grows past the flat limit (or an IVF one grows well past the size its
lists were planned for), a new index is trained in the background from a snapshot of the rows
while the old one keeps serving; rows added meanwhile are caught up before the swap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loom.sdk.errors import InvalidRequest, Unavailable

from ..durability import Durability, check_durability
from .index import FLAT, IVF_MIN, VectorIndex, build, empty, faiss_module, plan, unit_rows

log = logging.getLogger("loom.rag")

COLLECTION = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
KINDS = ("text", "image")
TEXT_LIMIT = 20_000  # characters of an item's text that are kept
#: How long a search waits for its index to finish loading before answering 503.
LOAD_WAIT_S = 120.0
#: Unsaved vectors (beyond a quarter of the index) that make the store write the index again.
SAVE_EVERY = 5_000

_SCHEMA = """
create table if not exists indices (
    name text primary key, collection text not null, model text not null, dim integer not null,
    created_at real not null
);
create table if not exists items (
    id integer primary key, index_name text not null, seq integer not null, kind text not null,
    text text not null default '', path text, job_id text, pipeline text,
    meta text not null default '{}', created_at real not null, vector blob not null,
    owner text not null default ''
);
create unique index if not exists items_by_seq on items (index_name, seq);
create index if not exists items_by_job on items (job_id);
"""


@dataclass
class _Index:
    name: str
    collection: str
    model: str
    dim: int
    file: Path
    count: int = 0  # rows in rag.db
    impl: VectorIndex | None = None
    saved: int = 0  # vectors in the file on disk
    rebuilding: bool = False
    builds: int = 0
    last_build_s: float | None = None
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.RLock = field(default_factory=threading.RLock)


def index_name(collection: str, model: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[:60]
    digest = hashlib.sha256(f"{collection}\0{model}".encode()).hexdigest()[:8]
    return f"{collection}--{slug}-{digest}"


def check_collection(collection: str) -> None:
    if not isinstance(collection, str) or not COLLECTION.match(collection):
        raise InvalidRequest(
            f"collection {collection!r} must be lowercase letters, digits, '-' or '_' (e.g. 'stories')",
            param="collection",
        )


class RagStore:
    def __init__(
        self, root: Path, *, ivf_min: int | None = None, use_faiss: bool = True, durability: Durability = "normal"
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        env = os.environ.get("LOOM_RAG_IVF_MIN")
        self.ivf_min = ivf_min or (int(env) if env else IVF_MIN)
        self._use_faiss = use_faiss
        self._faiss: Any = None
        self._faiss_checked = False
        self._lock = threading.RLock()  # the connection, and every write
        self._db = sqlite3.connect(str(self.root / "rag.db"), check_same_thread=False, timeout=30, isolation_level=None)
        # Big pages: a row holds a 2 KiB vector (512 floats), and 4 KiB pages would fit one row each.
        # Set before WAL mode: a WAL database's page size is fixed once it is created.
        self._db.execute("pragma page_size=16384")  # takes effect on a new database only
        self._db.execute("pragma journal_mode=wal")
        self._db.execute(f"pragma synchronous={check_durability(durability).upper()}")
        self._db.executescript(_SCHEMA)
        if "owner" not in [r[1] for r in self._db.execute("pragma table_info(items)")]:
            self._db.execute("alter table items add column owner text not null default ''")  # the admin's
        self._db.execute("create index if not exists items_by_owner on items (owner, index_name)")
        self._indices: dict[tuple[str, str], _Index] = {}
        self._threads: set[threading.Thread] = set()
        self._closed = False
        for name, collection, model, dim in self._db.execute("select name, collection, model, dim from indices"):
            (count,) = self._db.execute(
                "select coalesce(max(seq) + 1, 0) from items where index_name = ?", [name]
            ).fetchone()
            file = self.root / f"{name}.faiss"
            self._indices[(collection, model)] = _Index(name, collection, model, dim, file, count)

    # --- life cycle -----------------------------------------------------------------------------

    @property
    def faiss(self) -> Any | None:
        """faiss, imported on first use (never at daemon start-up); None without it."""
        if not self._faiss_checked:
            with self._lock:
                if not self._faiss_checked:
                    self._faiss = faiss_module() if self._use_faiss else None
                    self._faiss_checked = True
        return self._faiss

    @property
    def backend(self) -> str:
        """ "faiss" or "numpy" (exact search without faiss); asking imports nothing."""
        if self._faiss_checked:
            return "faiss" if self._faiss is not None else "numpy"
        return "faiss" if self._use_faiss and importlib.util.find_spec("faiss") is not None else "numpy"

    def start(self) -> None:
        """Load the saved indices in a background thread; an empty store loads nothing (and so
        imports nothing)."""
        pending = [st for st in self._indices.values() if not st.ready.is_set()]
        if pending:
            self._spawn(self.load_all, "loom-rag-load")

    def load_all(self) -> None:
        for st in list(self._indices.values()):
            if not st.ready.is_set():
                self._load(st)

    def close(self) -> None:
        self._closed = True
        for thread in list(self._threads):
            thread.join(timeout=120)
        for st in self._indices.values():
            try:
                self._save(st)
            except Exception:
                log.exception("could not save retrieval index %s", st.name)
        with self._lock:
            try:  # leave one file behind, not a WAL as big as the vectors written since start-up
                self._db.execute("pragma wal_checkpoint(truncate)")
            except sqlite3.Error:
                pass
            self._db.close()

    def _spawn(self, target, name: str, *args) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.add(thread)
        thread.start()

    # --- loading, rebuilding, saving --------------------------------------------------------------

    def _load(self, st: _Index) -> None:
        started = time.perf_counter()
        try:
            impl: VectorIndex | None = None
            faiss = self.faiss
            if faiss is not None and st.file.exists():
                try:
                    from .index import FaissIndex

                    impl = FaissIndex.load(st.file, faiss)
                    if impl.index.d != st.dim or impl.ntotal > st.count:
                        log.warning("retrieval index %s does not match its rows; rebuilding it", st.name)
                        impl = None
                    else:
                        st.saved = impl.ntotal
                except Exception as e:
                    log.warning("could not read %s (%s); rebuilding it from the rows", st.file.name, e)
                    impl = None
            if impl is None:
                with self._lock:
                    count = st.count
                impl = build(self._vectors(st, 0, count, own_connection=True), st.dim, count, self.ivf_min, faiss)
                st.builds += 1
                st.last_build_s = round(time.perf_counter() - started, 4)
            with self._lock, st.lock:
                self._catch_up(st, impl)
                st.impl = impl
            log.info(
                "retrieval index %s: %d items (%s) loaded in %.2fs",
                st.name,
                impl.ntotal,
                impl.kind,
                time.perf_counter() - started,
            )
        except Exception as e:
            log.exception("could not load retrieval index %s", st.name)
            st.error = f"{type(e).__name__}: {e}"
        finally:
            st.ready.set()
        self._maybe_rebuild(st)

    def _vectors(self, st: _Index, start: int, stop: int, own_connection: bool = False) -> np.ndarray:
        sql = "select vector from items where index_name = ? and seq >= ? and seq < ? order by seq"
        if own_connection:  # a background reader: WAL lets it read while the loop writes
            conn = sqlite3.connect(str(self.root / "rag.db"), timeout=30)
            try:
                blobs = [r[0] for r in conn.execute(sql, [st.name, start, stop])]
            finally:
                conn.close()
        else:
            with self._lock:
                blobs = [r[0] for r in self._db.execute(sql, [st.name, start, stop])]
        if not blobs:
            return np.zeros((0, st.dim), dtype=np.float32)
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, st.dim)

    def _catch_up(self, st: _Index, impl: VectorIndex) -> None:
        """Add the rows written after ``impl`` was built or saved (holding both locks)."""
        if impl.ntotal < st.count:
            impl.add(np.ascontiguousarray(self._vectors(st, impl.ntotal, st.count)))

    def _needs_rebuild(self, st: _Index) -> bool:
        if st.impl is None or st.rebuilding or self._closed or self.faiss is None:
            return False
        kind, nlist = plan(st.count, self.ivf_min)
        if kind == FLAT:
            return False
        # Flat -> IVF at the limit; an IVF's lists are re-planned when sqrt(N) grew by half.
        return st.impl.kind == FLAT or nlist >= 1.5 * max(1, st.impl.nlist)

    def _maybe_rebuild(self, st: _Index) -> None:
        with self._lock:  # lock order everywhere: the store's, then the index's
            if not self._needs_rebuild(st):
                return
            st.rebuilding = True
        self._spawn(self._rebuild, f"loom-rag-rebuild-{st.name}", st)

    def _rebuild(self, st: _Index) -> None:
        started = time.perf_counter()
        try:
            with self._lock:
                count = st.count
            impl = build(self._vectors(st, 0, count, own_connection=True), st.dim, count, self.ivf_min, self.faiss)
            with self._lock, st.lock:
                self._catch_up(st, impl)
                st.impl, st.saved = impl, 0
            st.builds += 1
            st.last_build_s = round(time.perf_counter() - started, 4)
            log.info(
                "retrieval index %s rebuilt as %s (%d lists) over %d items in %.2fs",
                st.name,
                impl.kind,
                impl.nlist,
                count,
                st.last_build_s,
            )
            self._save(st)
        except Exception as e:
            log.exception("could not rebuild retrieval index %s", st.name)
            st.error = f"rebuild failed: {type(e).__name__}: {e}"
        finally:
            st.rebuilding = False

    def _save(self, st: _Index) -> None:
        with st.lock:
            if st.impl is None or (st.impl.ntotal == st.saved and st.file.exists()):
                return
            if st.impl.save(st.file):
                st.saved = st.impl.ntotal

    def _maybe_save(self, st: _Index) -> None:
        if st.impl is None or st.rebuilding or self._closed or self.faiss is None:
            return
        if st.count - st.saved >= max(SAVE_EVERY, st.count // 4):
            self._spawn(self._save, f"loom-rag-save-{st.name}", st)

    def save(self) -> None:
        """Write every index that changed (the store also does this on close and after builds)."""
        for st in list(self._indices.values()):
            self._save(st)

    def wait_idle(self, timeout: float = 600) -> None:
        """Wait for loading and background rebuilds to finish (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._threads and time.monotonic() < deadline:
            for thread in list(self._threads):
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- adding ------------------------------------------------------------------------------------

    def add(self, collection: str, vectors: Any, items: list[dict[str, Any]], *, model: str) -> list[dict[str, Any]]:
        """Store vectors with their items (``kind``, ``text``, ``path``, ``job_id``, ``pipeline``,
        ``meta``); returns ``{"id", "collection", "model", "count"}`` per item."""
        check_collection(collection)
        if not model:
            raise InvalidRequest("model must name the embedding model that made the vectors", param="model")
        try:
            x = unit_rows(vectors)
        except ValueError as e:
            raise InvalidRequest(f"vector: {e}", param="vector") from None
        if len(items) != len(x):
            raise InvalidRequest(f"{len(x)} vectors but {len(items)} items", param="items")
        rows = []
        now = time.time()
        for item in items:
            kind = item.get("kind", "text")
            if kind not in KINDS:
                raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", param="kind")
            rows.append(
                (
                    kind,
                    str(item.get("text") or "")[:TEXT_LIMIT],
                    item.get("path"),
                    item.get("job_id"),
                    item.get("pipeline"),
                    json.dumps(item.get("meta") or {}, default=str),
                    str(item.get("owner") or ""),
                )
            )
        with self._lock:
            if self._closed:
                raise Unavailable("the retrieval store is closed")
            st = self._index(collection, model, x.shape[1])
            if st.dim != x.shape[1]:
                raise InvalidRequest(
                    f"index {collection!r} of model {model!r} holds {st.dim}-dimensional vectors; got {x.shape[1]}",
                    param="vector",
                )
            start = st.count
            self._db.execute("begin")
            try:
                self._db.executemany(
                    "insert into items (index_name, seq, kind, text, path, job_id, pipeline, meta, owner, "
                    "created_at, vector) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(st.name, start + i, *row, now, x[i].tobytes()) for i, row in enumerate(rows)],
                )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
            st.count = start + len(x)
            ids = [
                r[0]
                for r in self._db.execute(
                    "select id from items where index_name = ? and seq >= ? order by seq", [st.name, start]
                )
            ]
            with st.lock:
                if st.impl is not None:  # None while loading: the loader catches up
                    if st.impl.ntotal == start:
                        st.impl.add(x)
                    else:
                        self._catch_up(st, st.impl)
        self._maybe_rebuild(st)
        self._maybe_save(st)
        return [{"id": i, "collection": collection, "model": model, "count": st.count} for i in ids]

    def count_job(self, job_id: str) -> int:
        """How many items a job stored."""
        with self._lock:
            (count,) = self._db.execute("select count(*) from items where job_id = ?", [job_id]).fetchone()
        return int(count)

    def remove_job(self, job_id: str) -> int:
        """Delete every item a job stored (job pruning calls this when told to); returns how many.
        Each index that lost items is renumbered and rebuilt from its rows: an index position is a
        row's ``seq``, so the rows left close up. Searches of such an index wait for the rebuild
        (as for a load) instead of reading shifted positions."""
        removed = self._remove("job_id = ?", [job_id])
        if removed:
            log.info("retrieval: removed %d item(s) of job %s", removed, job_id)
        return removed

    def remove_item(self, item_id: int) -> bool:
        """Delete one item by id (``DELETE /v1/rag/items/{id}``); False if there is none."""
        return self._remove("id = ?", [item_id]) > 0

    def get_item(self, item_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "select i.id, x.collection, x.model, i.kind, i.text, i.path, i.job_id, i.pipeline, i.meta, "
                "i.created_at, i.owner from items i join indices x on x.name = i.index_name where i.id = ?",
                [item_id],
            ).fetchone()
        if row is None:
            return None
        keys = (
            "id",
            "collection",
            "model",
            "kind",
            "text",
            "path",
            "job_id",
            "pipeline",
            "meta",
            "created_at",
            "owner",
        )
        item = dict(zip(keys, row))
        item["meta"] = json.loads(item["meta"])
        return item

    def _remove(self, where: str, args: list[Any]) -> int:
        with self._lock:
            names = [r[0] for r in self._db.execute(f"select distinct index_name from items where {where}", args)]
            if not names:
                return 0
            self._db.execute("begin")
            try:
                (removed,) = self._db.execute(f"select count(*) from items where {where}", args).fetchone()
                self._db.execute(f"delete from items where {where}", args)
                for name in names:
                    # Through negative values, so no two rows hold one seq midway (a unique index).
                    ids = [
                        r[0] for r in self._db.execute("select id from items where index_name = ? order by seq", [name])
                    ]
                    self._db.execute("update items set seq = -seq - 1 where index_name = ?", [name])
                    self._db.executemany(
                        "update items set seq = ? where id = ?", [(i, id_) for i, id_ in enumerate(ids)]
                    )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
            stale = [st for st in self._indices.values() if st.name in names]
            for st in stale:
                with st.lock:
                    (st.count,) = self._db.execute(
                        "select count(*) from items where index_name = ?", [st.name]
                    ).fetchone()
                    st.impl, st.saved = None, 0
                    st.ready.clear()
                    st.file.unlink(missing_ok=True)  # a cache of the old positions
        for st in stale:
            self._load(st)  # builds from the rows; searches wait on ``ready``
        return int(removed)

    def _index(self, collection: str, model: str, dim: int) -> _Index:
        st = self._indices.get((collection, model))
        if st is None:
            name = index_name(collection, model)
            self._db.execute(
                "insert or ignore into indices (name, collection, model, dim, created_at) values (?, ?, ?, ?, ?)",
                [name, collection, model, dim, time.time()],
            )
            st = _Index(name, collection, model, dim, self.root / f"{name}.faiss")
            st.impl = empty(dim, self.faiss)
            st.ready.set()
            self._indices[(collection, model)] = st
        return st

    # --- searching ---------------------------------------------------------------------------------

    def search(
        self, collection: str, vector: Any, *, model: str, k: int = 5, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """The ``k`` items nearest ``vector``; ``owner`` (a user's scope): among that principal's only."""
        check_collection(collection)
        st = self._indices.get((collection, model))
        if st is None or st.count == 0 or k <= 0:
            return []
        if not st.ready.wait(LOAD_WAIT_S):
            raise Unavailable(f"the retrieval index {collection!r} ({model}) is still loading; try again shortly")
        if st.impl is None:
            raise Unavailable(f"the retrieval index {collection!r} ({model}) could not be loaded: {st.error}")
        try:
            q = unit_rows(vector, st.dim)
        except ValueError as e:
            raise InvalidRequest(f"query vector for {collection!r} ({model}): {e}", param="vector") from None
        if owner is not None:
            hits = self._own_hits(st, q[0], k, owner)
        else:
            with st.lock:
                scores, ids = st.impl.search(q, min(k, max(1, st.impl.ntotal)))
            hits = [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        if not hits:
            return []
        with self._lock:
            rows = self._db.execute(
                f"select id, seq, kind, text, path, job_id, pipeline, meta, created_at from items "
                f"where index_name = ? and seq in ({', '.join('?' for _ in hits)})",
                [st.name, *(seq for seq, _ in hits)],
            ).fetchall()
        by_seq = {r[1]: r for r in rows}
        out = []
        for seq, score in hits:
            r = by_seq.get(seq)
            if r is None:
                continue
            out.append(
                {
                    "id": r[0],
                    "collection": collection,
                    "model": model,
                    "score": round(score, 6),
                    "kind": r[2],
                    "text": r[3],
                    "path": r[4],
                    "url": f"/v1/files/{r[4]}" if r[4] else None,
                    "job_id": r[5],
                    "pipeline": r[6],
                    "meta": json.loads(r[7]),
                    "created_at": r[8],
                }
            )
        return out

    def _own_hits(self, st: _Index, q: np.ndarray, k: int, owner: str) -> list[tuple[int, float]]:
        """Exact inner products with one principal's rows of an index: (seq, score), best first."""
        with self._lock:
            rows = self._db.execute(
                "select seq, vector from items where index_name = ? and owner = ?", [st.name, owner]
            ).fetchall()
        if not rows:
            return []
        x = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, st.dim)
        scores = x @ q
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(rows[i][0]), float(scores[i])) for i in best]

    def models(self, collections: list[str] | None = None) -> list[str]:
        """Embedding models that have items in ``collections`` (all by default), most items first."""
        counts: dict[str, int] = {}
        for (collection, model), st in self._indices.items():
            if st.count and (not collections or collection in collections):
                counts[model] = counts.get(model, 0) + st.count
        return sorted(counts, key=lambda m: -counts[m])

    def collections(self) -> list[str]:
        return sorted({c for c, _ in self._indices})

    # --- reporting ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        indices = []
        for st in sorted(self._indices.values(), key=lambda s: (s.collection, s.model)):
            impl = st.impl
            indices.append(
                {
                    "name": st.name,
                    "collection": st.collection,
                    "model": st.model,
                    "dim": st.dim,
                    "count": st.count,
                    "indexed": impl.ntotal if impl is not None else 0,
                    "type": impl.kind if impl is not None else None,
                    "nlist": impl.nlist if impl is not None else 0,
                    "nprobe": impl.nprobe if impl is not None else 0,
                    "loaded": st.ready.is_set() and impl is not None,
                    "rebuilding": st.rebuilding,
                    "builds": st.builds,
                    "last_build_seconds": st.last_build_s,
                    "saved": st.saved,
                    "file_bytes": st.file.stat().st_size if st.file.exists() else 0,
                    "error": st.error,
                }
            )
        return {
            "object": "rag.stats",
            "backend": self.backend,
            "ivf_min": self.ivf_min,
            "items": sum(st.count for st in self._indices.values()),
            "collections": self.collections(),
            "indices": indices,
        }
