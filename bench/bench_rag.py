"""The retrieval store on clustered data: IVF recall@1 and @10 against exact search, search latency
and insert rates, at 100k and 1M stored items.

Real embeddings come in clusters (many near-duplicates of a few topics, a long tail of rare ones),
which is where an inverted-file index loses neighbours: a query near the edge of its list finds
some of its true neighbours in lists it does not probe. So the vectors here are drawn around 2,000
random centres with Zipf-distributed sizes and a spread that puts a point at cosine ~0.8 to its
centre; queries are fresh draws from the same distribution, never stored vectors (a stored vector
plus a little noise finds itself first under any index, which says nothing).

Everything goes into one collection of a real ``RagStore`` in a temporary folder, as pipelines add
them (one SQLite transaction plus a FAISS add per batch). The index is exact (flat) below
``LOOM_RAG_IVF_MIN`` (20k) and IVF above it, rebuilt in the background as the collection grows;
the bench waits for the rebuilds before timing. A search is ``RagStore.search`` with k=10: the
FAISS query plus reading the hits' rows, what a pipeline or ``POST /v1/rag/search`` waits for, less
the embedding and HTTP. The baseline is exact search (FAISS ``IndexFlatIP`` over the same vectors,
one thread like the store's queries): recall@k is the share of its top k that the store returns.

    .venv/bin/python bench/bench_rag.py [--dim 64] [--sizes 100000,1000000] [--queries 1000]

64 dimensions keep a million items within a small machine (256 MiB of vectors); ``--dim 512`` is
CLIP ViT-B's size.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loom.daemon.rag import RagStore
from loom.daemon.rag.index import faiss_module

COLLECTION, MODEL = "images", "bench-clip"
CLUSTERS, ZIPF = 2000, 1.1
K = 10


class Clustered:
    """Points around fixed random centres: cluster sizes follow Zipf, cosine to the centre ~0.8."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.dim = dim
        self.centres = unit(self.rng.standard_normal((CLUSTERS, dim)))
        weights = 1.0 / np.arange(1, CLUSTERS + 1) ** ZIPF
        self.weights = weights / weights.sum()
        # noise of norm s around a unit centre: cosine = 1 / sqrt(1 + s^2) = 0.8 at s = 0.75
        self.spread = 0.75 / np.sqrt(dim)

    def draw(self, n: int) -> np.ndarray:
        which = self.rng.choice(CLUSTERS, size=n, p=self.weights)
        x = self.centres[which] + self.spread * self.rng.standard_normal((n, self.dim)).astype(np.float32)
        return unit(x)


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items(start: int, n: int) -> list[dict]:
    return [
        {"kind": "image", "text": f"item {i}", "path": f"output/bench/{i}.png", "meta": {"i": i}}
        for i in range(start, start + n)
    ]


def fill(store: RagStore, vectors: np.ndarray, start: int, stop: int, batch: int = 5000) -> float:
    """Bulk-add rows start..stop; returns items per second."""
    t0 = time.perf_counter()
    for i in range(start, stop, batch):
        j = min(stop, i + batch)
        store.add(COLLECTION, vectors[i:j], items(i, j - i), model=MODEL)
    return (stop - start) / (time.perf_counter() - t0)


def single_inserts(store: RagStore, vectors: np.ndarray, start: int, n: int) -> float:
    """One item per add (what a pipeline does); returns items per second."""
    t0 = time.perf_counter()
    for i in range(start, start + n):
        store.add(COLLECTION, vectors[i], items(i, 1), model=MODEL)
    return n / (time.perf_counter() - t0)


def timed(search, queries: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Each query's ids and its latency in ms (after a short warm-up)."""
    for q in queries[:20]:
        search(q)
    ids, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        ids.append(search(q))
        times.append(time.perf_counter() - t0)
    return ids, np.array(times) * 1000


def recall(found: list[np.ndarray], exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(e[:k].tolist())) / k for f, e in zip(found, exact)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--sizes", default="100000,1000000", help="stored items at each measurement, ascending")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-timed", type=int, default=200, help="queries timed one by one on the exact index")
    ap.add_argument("--single", type=int, default=1000, help="items added one at a time before each measurement")
    args = ap.parse_args()
    faiss = faiss_module()
    if faiss is None:
        sys.exit("faiss is not installed: pip install -e '.[torch]'")
    sizes = [int(s) for s in args.sizes.split(",")]
    t_start = time.time()
    data = Clustered(args.dim)
    vectors = data.draw(sizes[-1])
    queries = data.draw(args.queries)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-rag-") as tmp:
        store = RagStore(Path(tmp) / "rag")
        store.start()
        count = 0
        for size in sizes:
            bulk = fill(store, vectors, count, size - args.single)
            single = single_inserts(store, vectors, size - args.single, args.single)
            count = size
            t0 = time.perf_counter()
            store.wait_idle()  # background IVF (re)builds finish before timing
            waited = time.perf_counter() - t0
            info = store.stats()["indices"][0]

            def search(q):
                return np.array([hit["meta"]["i"] for hit in store.search(COLLECTION, q, model=MODEL, k=K)])

            found, ms = timed(search, queries)
            # The baseline: exact inner-product search over the same vectors, one thread per query.
            flat = faiss.IndexFlatIP(args.dim)
            flat.add(vectors[:size])
            _, exact = flat.search(queries, K)  # ground truth, all queries at once
            faiss.omp_set_num_threads(1)
            _, exact_ms = timed(lambda q, index=flat: index.search(q[None, :], K)[1][0], queries[: args.exact_timed])
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            kind = info["type"] if info["type"] == "flat" else f"IVF, nlist {info['nlist']}, nprobe {info['nprobe']}"
            rows.append(
                {
                    "size": size,
                    "index": kind,
                    "p50": float(np.percentile(ms, 50)),
                    "p99": float(np.percentile(ms, 99)),
                    "r1": recall(found, exact, 1),
                    "r10": recall(found, exact, K),
                    "exact_p50": float(np.percentile(exact_ms, 50)),
                    "exact_p99": float(np.percentile(exact_ms, 99)),
                    "bulk": bulk,
                    "single": single,
                    "build": info["last_build_seconds"],
                    "waited": waited,
                }
            )
        store.close()
        t0 = time.perf_counter()
        reopened = RagStore(Path(tmp) / "rag")
        reopened.start()
        reopened.wait_idle()
        reload_s = time.perf_counter() - t0
        assert reopened.stats()["indices"][0]["indexed"] == sizes[-1]
        reopened.close()
        disk_mb = sum(f.stat().st_size for f in (Path(tmp) / "rag").iterdir()) / 2**20

    print(
        f"# RAG store on clustered data ({args.dim}-d, {CLUSTERS:,} clusters with Zipf sizes, cosine ~0.8 to "
        f"their centre; faiss {faiss.__version__}, {os.cpu_count()} CPU cores, "
        f"{platform.python_implementation()} {platform.python_version()})\n"
    )
    print(
        "| stored items | store's index | search p50 / p99 (ms) | recall@1 | recall@10 | "
        "exact search p50 / p99 (ms) | single inserts (items/s) | bulk inserts (items/s) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['index']} | {r['p50']:.2f} / {r['p99']:.2f} | {r['r1']:.3f} | {r['r10']:.3f} | "
            f"{r['exact_p50']:.2f} / {r['exact_p99']:.2f} | {r['single']:,.0f} | {r['bulk']:,.0f} |"
        )
    print(
        f"\nRecall is against exact search over the same vectors ({args.queries:,} held-out queries). "
        f"Last background IVF build: {rows[-1]['build']:.1f} s. Reload of {sizes[-1]:,} items at start-up: "
        f"{reload_s:.2f} s (rag.db + .faiss files: {disk_mb:.0f} MiB)."
    )
    print(
        f"\nCommand: .venv/bin/python bench/bench_rag.py --dim {args.dim} --sizes {args.sizes} "
        f"--queries {args.queries}   ({time.time() - t_start:.0f} s)"
    )


if __name__ == "__main__":
    main()
