"""One vector index: FAISS (exact flat, then IVF once it is big) or, without FAISS, numpy.

Vectors are unit length and the score is their inner product (cosine similarity). Items are only
ever appended, so the i-th vector added is FAISS id i: the store maps hits back to its rows by
(index, position) and never needs an id map.

The index type follows the size (:func:`plan`): below ``ivf_min`` vectors an exact
``IndexFlatIP`` (fast enough, and perfect recall); from there an ``IndexIVFFlat`` with about
sqrt(N) lists, trained on a sample and probed in ``nprobe`` of them, rebuilt with more lists each
time the collection doubles. faiss is imported here, lazily: starting the daemon imports none of it.

Threads: a single query or a single add runs on one OpenMP thread. FAISS would spread one query
over every core, which on a small machine (and next to a model generating on the CPU) makes
latency worse, not better: measured on two cores, a flat search of 10k vectors took 20 ms p50
with two threads and 0.7 ms with one. Index builds (k-means) use every core.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..atomic import replacing

FLAT, IVF = "flat", "ivf"
#: Below this many vectors the index stays exact (flat); ``LOOM_RAG_IVF_MIN`` overrides it.
IVF_MIN = 20_000
#: Training points per IVF list (FAISS wants at least 39; more costs training time).
TRAIN_PER_LIST = 64
KMEANS_ITERATIONS = 16


def faiss_module() -> Any | None:
    """faiss, or None when it is not installed (``pip install loom-daemon[torch]`` brings it)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def plan(count: int, ivf_min: int) -> tuple[str, int]:
    """The index type for ``count`` vectors, and its number of IVF lists (0 for flat)."""
    if count < ivf_min:
        return FLAT, 0
    return IVF, int(min(4096, max(16, round(math.sqrt(count)))))


def nprobe_for(nlist: int) -> int:
    """Lists searched per query: about a tenth of them, within 8..64."""
    return max(1, min(nlist, max(8, min(64, nlist // 10))))


def unit_rows(vectors: Any, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 matrix of unit rows (zero rows are left as they are)."""
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected vectors of one length, got an array of shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"expected vectors of {dim} dimensions, got {x.shape[1]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("vectors must be finite numbers")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class VectorIndex(Protocol):
    kind: str
    nlist: int
    nprobe: int

    @property
    def ntotal(self) -> int: ...

    def add(self, x: np.ndarray) -> None: ...

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: Path) -> bool: ...


class FaissIndex:
    """A FAISS index, flat or IVF."""

    def __init__(self, index: Any, faiss: Any) -> None:
        self.index, self.faiss = index, faiss
        ivf = faiss.try_extract_index_ivf(index) if hasattr(faiss, "try_extract_index_ivf") else None
        self.kind = IVF if ivf is not None else FLAT
        self.nlist = int(ivf.nlist) if ivf is not None else 0
        self.nprobe = int(ivf.nprobe) if ivf is not None else 0

    @classmethod
    def build(cls, vectors: np.ndarray, dim: int, kind: str, nlist: int, faiss: Any, seed: int = 0) -> FaissIndex:
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # OpenMP settings are per calling thread
        if kind == FLAT:
            index = faiss.IndexFlatIP(dim)
        else:
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = KMEANS_ITERATIONS
            index.cp.seed = seed
            # Train on a sample: k-means over every vector would cost far more for little gain.
            n = len(vectors)
            size = min(n, TRAIN_PER_LIST * nlist)
            sample = vectors if size == n else vectors[np.random.default_rng(seed).choice(n, size, replace=False)]
            index.train(np.ascontiguousarray(sample))
            index.nprobe = nprobe_for(nlist)
        if len(vectors):
            index.add(vectors)
        return cls(index, faiss)

    @classmethod
    def load(cls, path: Path, faiss: Any) -> FaissIndex:
        return cls(faiss.read_index(str(path)), faiss)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, x: np.ndarray) -> None:
        self.faiss.omp_set_num_threads(1 if len(x) < 256 else os.cpu_count() or 1)
        self.index.add(x)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.faiss.omp_set_num_threads(1 if len(q) < 16 else os.cpu_count() or 1)
        return self.index.search(q, k)

    def save(self, path: Path) -> bool:
        with replacing(path) as tmp:  # a reader (or a crash) never sees half an index
            self.faiss.write_index(self.index, str(tmp))
        return True


class NumpyIndex:
    """Exact search with numpy, for installs without faiss; rebuilt from the store at start-up."""

    kind, nlist, nprobe = FLAT, 0, 0

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._data = np.zeros((0, dim), dtype=np.float32)
        self._n = 0

    @classmethod
    def build(cls, vectors: np.ndarray, dim: int) -> NumpyIndex:
        index = cls(dim)
        index.add(vectors)
        return index

    @property
    def ntotal(self) -> int:
        return self._n

    def add(self, x: np.ndarray) -> None:
        need = self._n + len(x)
        if need > len(self._data):  # grow by doubling: amortised O(1) appends
            grown = np.zeros((max(need, 2 * len(self._data), 64), self.dim), dtype=np.float32)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = x
        self._n = need

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = q @ self._data[: self._n].T
        k = min(k, self._n)
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        ids = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, ids, axis=1), ids.astype(np.int64)

    def save(self, path: Path) -> bool:
        return False  # the store's rows are the copy on disk


def build(vectors: np.ndarray, dim: int, count_hint: int, ivf_min: int, faiss: Any | None) -> VectorIndex:
    """A new index over ``vectors``, of the type their number calls for."""
    if faiss is None:
        return NumpyIndex.build(vectors, dim)
    kind, nlist = plan(max(count_hint, len(vectors)), ivf_min)
    return FaissIndex.build(vectors, dim, kind, nlist, faiss)


def empty(dim: int, faiss: Any | None) -> VectorIndex:
    return NumpyIndex(dim) if faiss is None else FaissIndex.build(np.zeros((0, dim), np.float32), dim, FLAT, 0, faiss)
