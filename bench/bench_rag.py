"""The retrieval store: search latency at 10k and 100k stored items, and the insert rate.

Random unit vectors (512 dimensions by default, CLIP ViT-B's size) go into one collection of a
real ``RagStore`` in a temporary folder, as pipelines add them: each insert is one SQLite
transaction plus a FAISS add. The index is exact (flat) below ``LOOM_RAG_IVF_MIN`` (20k) and IVF
above it, rebuilt in the background as the collection grows; the bench waits for the rebuilds
before timing. A search is ``RagStore.search``: the FAISS query plus reading the hits' rows, so
what a pipeline or ``POST /v1/rag/search`` waits for, less the embedding and HTTP. Queries are
stored vectors plus noise (cosine ~0.99 to their source), so recall@1 says whether the source
comes back first; an exact flat index over the same 100k is timed for comparison.

    .venv/bin/python bench/bench_rag.py [--dim 512] [--queries 1000]
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
from loom.daemon.rag.index import FaissIndex, faiss_module

COLLECTION, MODEL = "images", "bench-clip"


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items(start: int, n: int) -> list[dict]:
    return [
        {"kind": "image", "text": f"item {i}", "path": f"output/bench/{i}.png", "meta": {"i": i}}
        for i in range(start, start + n)
    ]


def fill(store: RagStore, vectors: np.ndarray, start: int, stop: int, batch: int = 2000) -> float:
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


def queries(rng: np.random.Generator, vectors: np.ndarray, count: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    picks = rng.integers(0, count, n)
    q = vectors[picks] + 0.1 * unit(rng, n, vectors.shape[1]) / np.sqrt(2)
    return q / np.linalg.norm(q, axis=1, keepdims=True), picks


def timed_search(search, q: np.ndarray, picks: np.ndarray) -> dict:
    for v in q[:20]:  # warm-up
        search(v)
    times, hits = [], 0
    for v, want in zip(q, picks):
        t0 = time.perf_counter()
        top = search(v)
        times.append(time.perf_counter() - t0)
        hits += top == want
    ms = np.array(times) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "recall": hits / len(q)}


def store_search(store: RagStore):
    return lambda v: store.search(COLLECTION, v, model=MODEL, k=5)[0]["meta"]["i"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=2000, help="items added one at a time at each size")
    args = ap.parse_args()
    faiss = faiss_module()
    if faiss is None:
        sys.exit("faiss is not installed: pip install -e '.[torch]'")
    t_start = time.time()
    rng = np.random.default_rng(0)
    sizes = (10_000, 100_000)
    vectors = unit(rng, sizes[-1], args.dim)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-rag-") as tmp:
        store = RagStore(Path(tmp) / "rag")
        store.start()
        count = 0
        bulk_rates = []
        for size in sizes:
            bulk_rates.append(fill(store, vectors, count, size - args.single))
            single = single_inserts(store, vectors, size - args.single, args.single)
            count = size
            store.wait_idle()  # background IVF (re)builds finish before timing
            info = store.stats()["indices"][0]
            q, picks = queries(rng, vectors, count, args.queries)
            r = timed_search(store_search(store), q, picks)
            kind = info["type"] if info["type"] == "flat" else f"ivf (nlist {info['nlist']}, nprobe {info['nprobe']})"
            rows.append({"size": size, "index": kind, **r, "single": single, "build": info["last_build_seconds"]})
        # The exact alternative at the largest size, on the same vectors and queries.
        flat = FaissIndex.build(vectors, args.dim, "flat", 0, faiss)
        r_flat = timed_search(lambda v: int(flat.search(v[None, :], 5)[1][0][0]), q, picks)
        store.close()
        t0 = time.perf_counter()
        reopened = RagStore(Path(tmp) / "rag")
        reopened.start()
        reopened.wait_idle()
        reload_s = time.perf_counter() - t0
        assert reopened.stats()["indices"][0]["indexed"] == sizes[-1]
        reopened.close()
        disk_mb = sum(f.stat().st_size for f in (Path(tmp) / "rag").iterdir()) / 2**20

    cpu = os.cpu_count()
    print(
        f"# RAG store benchmark ({args.dim}-d random unit vectors, faiss {faiss.__version__}, "
        f"{cpu} CPU cores, {platform.python_implementation()} {platform.python_version()})\n"
    )
    print("| stored items | index | search p50 (ms) | search p99 (ms) | recall@1 | single inserts (items/s) |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['index']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['recall']:.3f} | "
            f"{r['single']:,.0f} |"
        )
    print(
        f"| {sizes[-1]:,} | exact flat, FAISS only (for comparison) | {r_flat['p50']:.2f} | {r_flat['p99']:.2f} | "
        f"{r_flat['recall']:.3f} | - |"
    )
    print()
    print(
        f"Bulk inserts (batches of 2,000): {bulk_rates[0]:,.0f} items/s to 10k, "
        f"{bulk_rates[1]:,.0f} items/s to 100k. "
        f"Last background IVF build: {rows[-1]['build']:.2f} s. Reload of 100k items at start-up: {reload_s:.2f} s "
        f"(rag.db + .faiss files: {disk_mb:.0f} MiB)."
    )
    print(
        f"\nCommand: .venv/bin/python bench/bench_rag.py --dim {args.dim} --queries {args.queries}   "
        f"({time.time() - t_start:.0f} s)"
    )


if __name__ == "__main__":
    main()
