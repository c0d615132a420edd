"""What the seed pipelines remember survives the daemon: the RAG indices (saved at shutdown, or
caught up from their rows after a SIGKILL), the personas and the artefact search."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.pipelines_support import PIPELINES_CONFIG, data_uri, picture, succeeded


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines-restart")
    d = Daemon(write_config(tmp / "loom.toml", PIPELINES_CONFIG), tmp / "data").start()
    yield d
    d.stop()


def client_of(d: Daemon) -> httpx.Client:
    return httpx.Client(base_url=d.url, timeout=30)


def nearest(c: httpx.Client, **query) -> dict:
    return c.post("/v1/rag/search", json={"k": 1, **query}).json()["data"][0]


def counts(c: httpx.Client, timeout: float = 30.0) -> dict[str, int]:
    """Items per collection's index, once every index has loaded (a daemon loads its saved indices
    in the background after start-up; ``loaded`` in the stats says when one is done)."""
    deadline = time.monotonic() + timeout
    while True:
        indices = c.get("/v1/rag/stats").json()["indices"]
        if all(i["loaded"] or i["error"] for i in indices) or time.monotonic() > deadline:
            return {i["collection"]: i["indexed"] for i in indices}
        time.sleep(0.05)


def test_indices_personas_and_search_survive_restarts(daemon):
    with client_of(daemon) as c:
        prompts = ["a lighthouse keeper on a stormy island", "a dragon who bakes bread", "a clockwork owl at midnight"]
        jobs = {p: succeeded(c, "story", {"prompt": p, "target_words": 40})["id"] for p in prompts}
        blue = succeeded(c, "describe", {"image": data_uri(picture((30, 70, 210)))})["result"]["image"]["path"]
        succeeded(c, "describe", {"image": data_uri(picture((220, 30, 30)))})
        succeeded(c, "persona", {"name": "Mira", "prompt": "a violet sorceress", "width": 64, "height": 64})
        before = counts(c)
        assert before == {"stories": 3, "images": 3}  # the persona image too

    daemon.restart()  # a clean stop: the indices are written at shutdown
    index_files = list((daemon.data_dir / "rag").glob("*.faiss"))
    assert len(index_files) == 2
    with client_of(daemon) as c:
        assert counts(c) == before
        assert (
            nearest(c, text="clockwork owl midnight", collection="stories")["job_id"]
            == jobs["a clockwork owl at midnight"]
        )
        assert nearest(c, image=data_uri(picture((35, 75, 205), mark=40)), collection="images")["path"] == blue
        stats = c.get("/v1/rag/stats").json()
        assert all(i["loaded"] and i["saved"] == i["count"] for i in stats["indices"])
        persona = c.get(f"/v1/personas/{quote('mira')}").json()
        assert persona["name"] == "Mira" and len(persona["images"]) == 1
        assert c.get(persona["images"][0]["url"]).status_code == 200
        assert c.get("/v1/artifacts", params={"q": "lighthouse"}).json()["data"]

        # Added after the last save, then the daemon is killed: nothing is lost.
        late = succeeded(c, "story", {"prompt": "a submarine crew meets a singing whale", "target_words": 40})["id"]
        succeeded(
            c,
            "persona",
            {"name": "MIRA", "prompt": "a violet sorceress", "motto_tone": "mysterious", "width": 64, "height": 64},
        )

    daemon.restart(kill=True)
    with client_of(daemon) as c:
        assert counts(c) == {"stories": 4, "images": 4}
        assert nearest(c, text="submarine singing whale", collection="stories")["job_id"] == late
        retrieved = succeeded(
            c,
            "story_to_image",
            {"story": "The submarine crew heard the whale singing.", "width": 64, "height": 64, "k": 1},
        )["result"]["retrieved"]
        assert {h["job_id"] for h in retrieved if h["collection"] == "stories"} == {late}
        persona = c.get("/v1/personas/Mira").json()
        assert len(persona["images"]) == 2 and [m["tone"] for m in persona["mottos"]] == ["inspirational", "mysterious"]
