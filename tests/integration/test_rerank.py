"""Rerank and score end to end: ``POST /v1/rerank`` (and ``/rerank``, ``/v2/rerank``) and vLLM's
``POST /v1/score`` on a live daemon, through the mock reranker, a tiny random-weight cross-encoder,
and tiny CLIP ranking pictures; the ``cohere`` package's client; reranked retrieval
(``/v1/rag/search`` and the ``story_to_image`` pipeline); bad input in OpenAI's error shape; and
the openai provider's rerank against this daemon as its upstream (the conformance kit).
"""

from __future__ import annotations

import base64
import http.server
import io
import math
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from loom.plugins.openai import OpenAIProvider
from loom.sdk import Capability
from loom.sdk.testing import ProviderConformance
from PIL import Image

from tests.conftest import Daemon, write_config

TORCH_PROVIDERS = Path(__file__).resolve().parent / "torch_providers"

CONFIG = """
[daemon]
host = "127.0.0.1"

[daemon.image_urls]
allow_private = true         # the picture server of these tests is on loopback

[routes]
chat = "mock-chat"
embedding = "mock-chat"
image = "mock-image"
rerank = "mock-rerank"

[[models]]
id = "mock-rerank"
provider = "mock"
capabilities = ["rerank"]

[[models]]
id = "mock-chat"
provider = "mock"
capabilities = ["chat", "embedding"]

[[models]]
id = "mock-image"
provider = "mock"
capabilities = ["image"]
"""

TORCH_MODELS = """
[[models]]
id = "tiny-rerank"
provider = "transformers-rerank"
options = {{ model = "{cross_encoder}" }}

[[models]]
id = "tiny-clip"
provider = "openclip"
options = {{ model = "{clip}" }}
"""


def _tiny_models():
    sys.path.insert(0, str(TORCH_PROVIDERS))
    try:
        import tiny_models
    finally:
        sys.path.remove(str(TORCH_PROVIDERS))
    return tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path] | None:
    """The tiny cross-encoder and CLIP, saved as a user's models are; None without torch."""
    try:
        import open_clip  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return None
    models = _tiny_models()
    root = tmp_path_factory.mktemp("rerank-models")
    return {"cross_encoder": models.cross_encoder(root), "clip": models.open_clip_model(root)["folder"]}


@pytest.fixture(scope="module")
def daemon(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rerank")
    body = CONFIG + (TORCH_MODELS.format(**{k: str(v) for k, v in tiny.items()}) if tiny else "")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp / "hf"), "OMP_NUM_THREADS": "2"}
    d = Daemon(write_config(tmp / "loom.toml", body), tmp / "data", env=env).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def api(daemon):
    with httpx.Client(base_url=daemon.url, timeout=120) as client:
        yield client


@pytest.fixture
def torch_models(tiny):
    if tiny is None:
        pytest.skip("torch, transformers and open_clip are not installed")
    return tiny


def rerank(api: httpx.Client, path: str = "/v1/rerank", **body) -> dict:
    r = api.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def refused(api: httpx.Client, path: str, body: dict, status: int = 400) -> dict:
    r = api.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    return error


def png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


# --- the mock reranker, on the shipped-style route ------------------------------------------------

DOCS = ["Stocks fell sharply today.", "The sea is calm tonight.", "A calm lake at dawn."]


def test_the_routed_model_answers_in_cohere_shape_sorted_by_score(api):
    body = rerank(api, query="calm sea", documents=DOCS)  # no model: [routes] rerank
    assert body["model"] == "mock-rerank" and body["id"].startswith("rerank-")
    # The mock scores the share of the query's words a document holds.
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(1, 1.0), (2, 0.5), (0, 0.0)]
    assert [r["document"] for r in body["results"]] == [{"text": DOCS[1]}, {"text": DOCS[2]}, {"text": DOCS[0]}]
    assert body["usage"]["total_tokens"] > 0
    r = api.post("/v1/rerank", json={"query": "calm sea", "documents": DOCS})
    assert r.headers["x-loom-model"] == "mock-rerank" and r.headers["x-loom-provider"] == "mock"


def test_top_n_return_documents_objects_and_the_unversioned_paths(api):
    top = rerank(api, model="mock-rerank", query="calm sea", documents=DOCS, top_n=2, return_documents=False)
    assert [r["index"] for r in top["results"]] == [1, 2]
    assert all("document" not in r for r in top["results"])
    # More than there are documents is all of them, as Cohere, vLLM and llama-server answer.
    assert len(rerank(api, query="calm sea", documents=DOCS, top_n=50)["results"]) == 3
    objects = [{"text": d} for d in DOCS]
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        body = rerank(api, path, query="calm sea", documents=objects)
        assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(1, 1.0), (2, 0.5), (0, 0.0)]


def test_the_cohere_client(daemon):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(base_url=daemon.url, api_key="none")
    answer = client.rerank(model="mock-rerank", query="calm sea", documents=DOCS, top_n=2)
    assert [(r.index, r.relevance_score) for r in answer.results] == [(1, 1.0), (2, 0.5)]


def test_vllm_score_one_to_many_and_pairwise(api):
    r = api.post("/v1/score", json={"text_1": "calm sea", "text_2": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "mock-rerank" and body["id"].startswith("score-")
    assert [(d["index"], d["object"], d["score"]) for d in body["data"]] == [
        (0, "score", 0.0),
        (1, "score", 1.0),
        (2, "score", 0.5),
    ]
    pairs = api.post(
        "/v1/score", json={"model": "mock-rerank", "text_1": ["calm sea", "stocks"], "text_2": [DOCS[1], DOCS[0]]}
    ).json()
    assert [d["score"] for d in pairs["data"]] == [1.0, 1.0]
    assert pairs["usage"]["total_tokens"] > 0


def test_image_documents_on_the_mock_are_ranked_by_colour(api):
    red, blue = data_uri(png((220, 30, 30))), data_uri(png((30, 70, 210)))
    body = rerank(api, query="a red square", documents=[blue, {"image": red}, "a red square"])
    assert [r["index"] for r in body["results"]][:2] == [2, 1]  # the text itself, then the red picture


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_a_400_naming_the_field(api):
    for path in ("/v1/rerank", "/v2/rerank"):
        assert refused(api, path, {"query": "q", "documents": []})["param"] == "documents"
    assert refused(api, "/v1/rerank", {"query": "q", "documents": DOCS, "top_n": 0})["param"] == "top_n"
    assert refused(api, "/v1/rerank", {"query": "q", "documents": DOCS, "top_n": -3})["param"] == "top_n"
    assert refused(api, "/v1/rerank", {"query": "", "documents": DOCS})["param"] == "query"
    assert refused(api, "/v1/rerank", {"documents": DOCS})["param"] == "query"
    both = refused(api, "/v1/rerank", {"query": "q", "documents": [{"text": "a", "image": "b"}]})
    assert both["param"] == "documents[0]" and "exactly one" in both["message"]
    assert refused(api, "/v1/rerank", {"query": "q", "documents": ["a"] * 1001})["param"] == "documents"
    unknown = refused(api, "/v1/rerank", {"query": "q", "documents": DOCS, "rank_fields": ["x"]})
    assert unknown["param"] == "rank_fields"
    not_image = refused(api, "/v1/rerank", {"query": "q", "documents": [{"image": "bm90IGFuIGltYWdl"}]})
    assert not_image["param"] == "documents[0].image"
    scheme = refused(api, "/v1/rerank", {"query": "q", "documents": [{"image": "file:///etc/passwd"}]})
    assert scheme["code"] == "invalid_image_url" and scheme["param"] == "documents[0].image"
    assert refused(api, "/v1/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]})["param"] == "text_2"
    assert refused(api, "/v1/score", {"text_1": "a", "text_2": []})["param"] == "text_2"


def test_a_model_without_rerank_or_none_at_all(api):
    error = refused(api, "/v1/rerank", {"model": "mock-chat", "query": "q", "documents": DOCS})
    assert error["code"] == "capability_not_supported" and error["param"] == "model"
    assert refused(api, "/v1/score", {"model": "mock-chat", "text_1": "a", "text_2": "b"})["code"] == (
        "capability_not_supported"
    )
    missing = refused(api, "/v1/rerank", {"model": "no-such-model", "query": "q", "documents": DOCS}, 404)
    assert missing["code"] == "model_not_found"


# --- the tiny cross-encoder -----------------------------------------------------------------------


def test_the_cross_encoder_scores_as_transformers_does(api, torch_models):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    query, docs = "is the sea calm tonight?", ["the sea is calm tonight.", "a red fox.", "the lighthouse story."]
    body = rerank(api, model="tiny-rerank", query=query, documents=docs)
    served = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [r["relevance_score"] for r in body["results"]] == sorted(served.values(), reverse=True)

    folder = torch_models["cross_encoder"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tokenizer([query] * 3, docs, padding=True, truncation="only_second", return_tensors="pt")
    with torch.inference_mode():
        expected = torch.sigmoid(model(**batch).logits[:, 0]).tolist()
    for i, want in enumerate(expected):
        assert math.isclose(served[i], want, abs_tol=1e-5), (i, served[i], want)
    assert body["usage"]["total_tokens"] == int(batch["attention_mask"].sum())
    score = api.post("/v1/score", json={"model": "tiny-rerank", "text_1": query, "text_2": docs}).json()
    assert [d["score"] for d in score["data"]] == pytest.approx(expected, abs=1e-5)


def test_the_cross_encoder_refuses_pictures(api, torch_models):
    error = refused(api, "/v1/rerank", {"model": "tiny-rerank", "query": "q", "documents": [data_uri(png((1, 2, 3)))]})
    assert error["code"] == "capability_not_supported" and error["param"] == "documents"


# --- tiny CLIP: a multimodal rerank ---------------------------------------------------------------


class PictureServer:
    """Serves PNGs at http://127.0.0.1:<port>/<name>.png, as a web page's images would be."""

    def __init__(self, pictures: dict[str, bytes]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = pictures.get(self.path.strip("/").removesuffix(".png"))
                self.send_response(200 if data else 404)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_clip_ranks_pictures_by_their_similarity_to_the_text(daemon, api, torch_models):
    pictures = {name: png(colour) for name, colour in (("red", (220, 30, 30)), ("green", (40, 170, 60)))}
    server = PictureServer(pictures)
    try:
        documents = [
            {"image": data_uri(png((30, 70, 210)))},
            {"image": f"{server.url}/red.png"},  # fetched by the daemon through the SSRF guard
            data_uri(pictures["green"]),
            {"text": "a photo of a blue square"},
        ]
        query = "a photo of a red square"
        body = rerank(api, model="tiny-clip", query=query, documents=documents)
    finally:
        server.close()
    served = {r["index"]: r["relevance_score"] for r in body["results"]}
    # The same model's embeddings: a document's score is its cosine with the query.
    inputs = [query, data_uri(png((30, 70, 210))), data_uri(pictures["red"]), data_uri(pictures["green"])]
    inputs.append("a photo of a blue square")
    vectors = [e.embedding for e in daemon.openai().embeddings.create(model="tiny-clip", input=inputs).data]
    cosines = [sum(a * b for a, b in zip(vectors[0], v, strict=True)) for v in vectors[1:]]
    for i, want in enumerate(cosines):
        assert math.isclose(served[i], want, abs_tol=1e-4), (i, served[i], want)
    assert [r["index"] for r in body["results"]] == sorted(range(4), key=lambda i: -cosines[i])
    # Each result carries its document as it was sent (the URL, not the fetched picture).
    by_index = {r["index"]: r["document"] for r in body["results"]}
    assert by_index[1] == documents[1] and by_index[2] == {"image": documents[2]} and by_index[3] == documents[3]
    # A picture as the query ranks captions.
    captions = rerank(api, model="tiny-clip", query=data_uri(pictures["red"]), documents=["red", "green", "blue"])
    assert sorted(r["index"] for r in captions["results"]) == [0, 1, 2]


# --- reranked retrieval ---------------------------------------------------------------------------

#: Chosen so that the mock's embedding search and its reranker disagree: the first holds "red" four
#: times (close to the query's vector), the second holds both query words among many others.
STORIES = ["red red red red apple tomato cherry", "a quick brown fox jumped over the lazy dog near the red barn"]


@pytest.fixture(scope="module")
def stories(api):
    """The two stories in a collection of their own, and in ``stories`` (what the pipelines recall)."""
    items = [{"text": t, "collection": c} for c in ("rerank-stories", "stories") for t in STORIES]
    r = api.post("/v1/rag/items", json=items)
    assert r.status_code in (200, 201), r.text
    return STORIES


def test_rag_search_reranks_its_candidates_as_the_reranker_says(api, stories):
    ask = {"text": "red fox", "collections": ["rerank-stories"], "k": 2}
    plain = api.post("/v1/rag/search", json=ask).json()
    assert [h["text"] for h in plain["data"]] == STORIES and plain["reranked_by"] is None
    reranked = api.post("/v1/rag/search", json={**ask, "rerank": True}).json()
    assert reranked["reranked_by"] == "mock-rerank"
    assert [h["text"] for h in reranked["data"]] == STORIES[::-1]  # the order changed ...
    said = rerank(api, query="red fox", documents=STORIES, return_documents=False)["results"]
    assert [STORIES[r["index"]] for r in said] == [h["text"] for h in reranked["data"]]  # ... as the reranker says
    assert [h["rerank_score"] for h in reranked["data"]] == [r["relevance_score"] for r in said]
    named = api.post("/v1/rag/search", json={**ask, "rerank_model": "mock-chat"})
    assert named.status_code == 400 and named.json()["error"]["param"] == "rerank_model"


def test_story_to_image_reranks_what_it_retrieved(api, stories):
    # The stories were indexed with the embedding route's model (a pipeline prefers a CLIP one).
    params = {"story": "red fox", "k": 1, "rerank": True, "remember": False, "embedding_model": "mock-chat"}
    job = api.post("/v1/pipelines/story_to_image", json=params, headers={"Prefer": "wait=60"}).json()
    for _ in range(600):
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
        job = api.get(f"/v1/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["models"]["rerank"] == "mock-rerank"
    # k = 1 from each of two collections: three candidates each were recalled, two are kept.
    assert [h["text"] for h in result["retrieved"]] == STORIES[::-1]
    said = rerank(api, query="red fox", documents=STORIES, return_documents=False)["results"]
    assert [h["rerank_score"] for h in result["retrieved"]] == [r["relevance_score"] for r in said]


# --- the openai provider's rerank, with this daemon as its upstream -------------------------------


def _openai_fixtures():
    from loom.plugins.openai import Instance, PluginOptions

    @pytest.fixture(scope="class")
    @classmethod
    def loom_options(cls):
        return {"instance": "upstream", "model": "mock-rerank"}

    @pytest.fixture(scope="class")
    @classmethod
    def loom_plugin_options(cls, daemon):
        return PluginOptions(instances={"upstream": Instance(base_url=f"{daemon.url}/v1", retries=0)})

    return loom_options, loom_plugin_options


class TestOpenAIRerankConformance(ProviderConformance):
    provider = OpenAIProvider
    capabilities = frozenset({Capability.RERANK})
    loom_options, loom_plugin_options = _openai_fixtures()
