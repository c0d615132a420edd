"""The retrieval store: nearest items, persistence across reopening (and a crash before saving),
flat -> IVF rebuilds in the background, validation, and the numpy fallback without faiss."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from loom.daemon.rag import RagStore
from loom.daemon.rag.index import FLAT, IVF, nprobe_for, plan
from loom.sdk.errors import InvalidRequest

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items(n: int, prefix: str = "item", start: int = 0) -> list[dict]:
    return [
        {"text": f"{prefix} {i}", "meta": {"i": i}, "job_id": f"job{i}", "pipeline": "test"}
        for i in range(start, start + n)
    ]


@pytest.fixture(params=["faiss", "numpy"])
def backend(request):
    if request.param == "faiss":
        pytest.importorskip("faiss")
    return request.param


def open_store(root, backend: str, **kw) -> RagStore:
    store = RagStore(root, use_faiss=backend == "faiss", **kw)
    store.start()
    store.wait_idle()
    return store


def test_plan_is_flat_then_ivf_with_lists_growing_as_the_square_root():
    assert plan(100, 20_000) == (FLAT, 0)
    kind, nlist = plan(100_000, 20_000)
    assert kind == IVF and 300 <= nlist <= 330
    assert plan(4_000_000, 20_000)[1] == 2000
    assert 8 <= nprobe_for(316) <= 64


def test_search_returns_the_nearest_item_first(tmp_path, backend):
    rng = np.random.default_rng(0)
    x = unit(rng, 200)
    store = open_store(tmp_path / "rag", backend)
    added = store.add("stories", x, items(200), model="m")
    assert [a["id"] for a in added] == list(range(1, 201)) and added[-1]["count"] == 200
    query = x[42] + 0.05 * unit(rng, 1)[0]
    hits = store.search("stories", query, model="m", k=3)
    assert hits[0]["text"] == "item 42" and hits[0]["meta"] == {"i": 42} and hits[0]["job_id"] == "job42"
    assert hits[0]["score"] > 0.9 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    # Each (collection, model) is its own index: other models and collections see nothing.
    assert store.search("stories", query, model="other", k=3) == []
    assert store.search("images", query, model="m", k=3) == []
    store.close()


def test_indices_survive_reopening(tmp_path, backend):
    rng = np.random.default_rng(1)
    x = unit(rng, 300)
    store = open_store(tmp_path / "rag", backend)
    store.add(
        "images",
        x[:150],
        [{**i, "kind": "image", "path": f"output/x/{n}.png"} for n, i in enumerate(items(150))],
        model="clip",
    )
    store.add("stories", x[150:], items(150, "story"), model="clip")
    store.close()
    if backend == "faiss":
        assert len(list((tmp_path / "rag").glob("*.faiss"))) == 2

    again = open_store(tmp_path / "rag", backend)
    stats = again.stats()
    assert stats["items"] == 300 and {i["collection"]: i["count"] for i in stats["indices"]} == {
        "images": 150,
        "stories": 150,
    }
    assert all(i["loaded"] and i["indexed"] == 150 for i in stats["indices"])
    hit = again.search("images", x[7], model="clip", k=1)[0]
    assert hit["text"] == "item 7" and hit["kind"] == "image" and hit["url"] == "/v1/files/output/x/7.png"
    assert again.search("stories", x[151], model="clip", k=1)[0]["text"] == "story 1"
    again.close()


def test_rows_added_after_the_last_save_are_caught_up(tmp_path, backend):
    """A crash (no close, no save) loses nothing: the rows are the truth, the file a cache."""
    rng = np.random.default_rng(2)
    x = unit(rng, 120)
    store = open_store(tmp_path / "rag", backend)
    store.add("stories", x[:100], items(100), model="m")
    store.save()
    store.add("stories", x[100:], items(20, "late"), model="m")  # never saved to the .faiss file
    crashed = open_store(tmp_path / "rag", backend)  # the first store is never closed
    assert crashed.stats()["indices"][0]["indexed"] == 120
    assert crashed.search("stories", x[110], model="m", k=1)[0]["text"] == "late 10"
    crashed.close()


def test_a_damaged_index_file_is_rebuilt_from_the_rows(tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    x = unit(rng, 50)
    store = open_store(tmp_path / "rag", "faiss")
    store.add("stories", x, items(50), model="m")
    store.close()
    for f in (tmp_path / "rag").glob("*.faiss"):
        f.write_bytes(b"not an index")
    again = open_store(tmp_path / "rag", "faiss")
    assert again.search("stories", x[3], model="m", k=1)[0]["text"] == "item 3"
    assert again.stats()["indices"][0]["builds"] == 1
    again.close()


def test_growing_past_the_limit_rebuilds_as_ivf_in_the_background(tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(4)
    centres = unit(rng, 40)
    # Clustered data, as real embeddings are: IVF's lists then hold the neighbours.
    x = centres[rng.integers(0, 40, 3000)] + 0.15 * unit(rng, 3000)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = open_store(tmp_path / "rag", "faiss", ivf_min=1000)
    store.add("images", x[:900], items(900), model="m")
    assert store.stats()["indices"][0]["type"] == FLAT
    stop = threading.Event()
    errors: list[BaseException] = []

    def search_meanwhile():
        while not stop.is_set():
            try:
                store.search("images", x[5], model="m", k=5)
            except BaseException as e:
                errors.append(e)

    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    for start in range(900, 3000, 300):  # adds continue while the IVF index trains
        store.add("images", x[start : start + 300], items(300, start=start), model="m")
    store.wait_idle()
    stop.set()
    searcher.join()
    assert not errors
    info = store.stats()["indices"][0]
    assert info["type"] == IVF and info["nlist"] >= 16 and info["indexed"] == 3000 and not info["rebuilding"]
    probes = range(0, 3000, 37)
    found = sum(
        store.search("images", x[i] + 0.01 * unit(rng, 1)[0], model="m", k=1)[0]["meta"]["i"] == i for i in probes
    )
    assert found / len(probes) >= 0.9
    store.close()
    # Reloaded as IVF, from its file.
    again = open_store(tmp_path / "rag", "faiss", ivf_min=1000)
    assert again.stats()["indices"][0]["type"] == IVF and again.stats()["indices"][0]["indexed"] == 3000
    again.close()


def test_bad_input_is_refused(tmp_path, backend):
    store = open_store(tmp_path / "rag", backend)
    store.add("stories", np.ones((1, DIM)), items(1), model="m")
    with pytest.raises(InvalidRequest, match="dimensional"):
        store.add("stories", np.ones((1, DIM + 1)), items(1), model="m")
    with pytest.raises(InvalidRequest, match="collection"):
        store.add("Bad Name", np.ones((1, DIM)), items(1), model="m")
    with pytest.raises(InvalidRequest, match="kind"):
        store.add("stories", np.ones((1, DIM)), [{"kind": "audio"}], model="m")
    with pytest.raises(InvalidRequest, match="finite"):
        store.add("stories", np.full((1, DIM), np.nan), items(1), model="m")
    with pytest.raises(InvalidRequest, match="dimensions"):
        store.search("stories", np.ones(DIM - 1), model="m")
    store.close()


def test_models_are_listed_by_how_much_they_hold(tmp_path, backend):
    rng = np.random.default_rng(5)
    store = open_store(tmp_path / "rag", backend)
    store.add("stories", unit(rng, 3), items(3), model="small")
    store.add("images", unit(rng, 5, 16), items(5), model="big")
    assert store.models() == ["big", "small"]
    assert store.models(["stories"]) == ["small"]
    assert store.collections() == ["images", "stories"]
    store.close()


def test_removing_a_job_drops_its_items_and_the_rest_still_search_right(tmp_path, backend):
    rng = np.random.default_rng(3)
    x = unit(rng, 60)
    store = open_store(tmp_path / "rag", backend)
    owners = [{"text": f"item {i}", "job_id": "doomed" if i % 3 == 0 else "kept", "pipeline": "t"} for i in range(60)]
    store.add("stories", x, owners, model="m")
    store.save()
    assert store.remove_job("doomed") == 20 and store.remove_job("doomed") == 0
    store.wait_idle()
    assert store.stats()["items"] == 40
    for i in range(60):  # every kept item is still its own nearest neighbour; no removed one is found
        hits = store.search("stories", x[i], model="m", k=40)
        assert all(h["job_id"] == "kept" for h in hits)
        if i % 3:
            assert hits[0]["text"] == f"item {i}" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    more = unit(rng, 5)
    store.add("stories", more, items(5, "late"), model="m")
    assert store.search("stories", more[2], model="m", k=1)[0]["text"] == "late 2"
    store.close()
    reopened = open_store(tmp_path / "rag", backend)  # the renumbered rows survive reopening
    assert reopened.stats()["items"] == 45
    assert reopened.search("stories", x[1], model="m", k=1)[0]["text"] == "item 1"
    reopened.close()
