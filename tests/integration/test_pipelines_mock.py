"""The seed pipelines end to end over HTTP on the mock providers: story, translate, describe,
image_to_story / story_to_image with retrieval, illustrated_story, persona; the RAG, persona and
artefact-search routes."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import sse_events
from tests.integration.pipelines_support import (
    PIPELINES_CONFIG,
    data_uri,
    fetch_image,
    picture,
    run,
    succeeded,
)

SEEDS = {"story", "translate", "describe", "image_to_story", "story_to_image", "illustrated_story", "persona"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines")
    d = Daemon(write_config(tmp / "loom.toml", PIPELINES_CONFIG), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        yield c


def test_every_seed_pipeline_is_listed_with_its_schema(client):
    pipelines = {p["name"]: p for p in client.get("/v1/pipelines").json()["data"]}
    assert set(pipelines) >= SEEDS
    assert pipelines["story"]["plugin"] == "story" and pipelines["persona"]["plugin"] == "persona"
    schema = pipelines["story"]["params_schema"]["$defs"]["StoryParams"]
    assert {"prompt", "audience", "target_words", "max_tokens", "model"} <= set(schema["properties"])


# --- story ----------------------------------------------------------------------------------------


def test_story_writes_a_titled_story_for_its_audience_and_saves_it(client):
    job = succeeded(
        client, "story", {"prompt": "a lighthouse keeper on a stormy island", "audience": "YA", "target_words": 80}
    )
    result = job["result"]
    assert result["audience"] == "young adult" and result["model"] == "p-llm"
    assert result["story"] and result["title"] and result["words"] == len(result["story"].split())
    text = client.get(result["files"]["text"]["url"]).text
    assert text.startswith(result["title"]) and result["story"] in text
    assert job["output_dir"].startswith("output/") and result["files"]["text"]["path"].startswith(job["output_dir"])
    assert result["memory"]["error"] is None and result["memory"]["stored"][0]["collection"] == "stories"
    names = {a["name"] for a in job["artifacts"]}
    assert {"story.txt", "story.json", "metadata.json"} <= names
    # Progress events, in order, end to end.
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        stages = [e["data"]["data"]["stage"] for e in sse_events(r) if e["event"] == "progress"]
    assert stages == ["starting", "writing", "saving", "indexing", "done"]


def test_story_length_is_bounded_by_max_tokens(client):
    result = succeeded(client, "story", {"prompt": "a very long tale", "max_tokens": 16, "remember": False})["result"]
    assert 0 < len(result["story"].split()) <= 16 and result["memory"] is None


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": "x", "target_words": 5}, "target_words"),
        ({"prompt": "x", "audiense": "kids"}, "audiense"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_bad_story_params_are_a_400(client, body, param):
    r = client.post("/v1/pipelines/story", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


# --- translate ------------------------------------------------------------------------------------


def test_translate_a_batch_in_one_job(client):
    texts = ["good morning", "the red fox sleeps", "see you tomorrow"]
    result = succeeded(
        client, "translate", {"text": texts, "source": "eng_Latn", "target": "fra_Latn", "batch_size": 2}
    )["result"]
    assert result["count"] == 3 and result["model"] == "p-translate"
    assert result["translations"] == [
        "[fra_Latn] morning good",
        "[fra_Latn] sleeps fox red the",
        "[fra_Latn] tomorrow you see",
    ]
    saved = client.get(result["files"]["json"]["url"]).json()
    assert [i["text"] for i in saved["items"]] == texts
    single = succeeded(client, "translate", {"text": "hello", "source": "en", "target": "de"})["result"]
    assert single["translations"] == ["[de] hello"]


def test_a_malformed_language_code_is_a_400_at_submit(client):
    r = client.post("/v1/pipelines/translate", json={"text": "hi", "source": "english", "target": "fr"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "source"


def test_a_code_the_model_lacks_fails_the_job_with_a_clear_error(client):
    job = run(client, "translate", {"text": ["hi"], "source": "en", "target": "xx_Yyyy"})
    assert job["state"] == "failed"
    error = job["error"]
    assert error["param"] == "target" and "xx_Yyyy" in error["message"] and "p-translate" in error["message"]
    assert error["step"] == "batch-0"


# --- describe -------------------------------------------------------------------------------------


def test_describe_a_data_uri_at_each_detail_level(client):
    red = data_uri(picture((220, 30, 30)))
    brief = succeeded(client, "describe", {"image": red, "detail": "brief", "remember": False})["result"]
    detailed = succeeded(client, "describe", {"image": red, "remember": False})["result"]
    assert "red" in brief["description"] and len(detailed["description"]) > 2 * len(brief["description"])
    assert detailed["detail"] == "detailed" and detailed["model"] == "p-vision"
    assert client.get(detailed["image"]["url"]).content == picture((220, 30, 30))


def test_describe_a_file_loom_serves_by_its_url(client, daemon):
    made = succeeded(
        client,
        "story_to_image",
        {"story": "A yellow sun over a yellow field.", "width": 64, "height": 64, "remember": False, "k": 0},
    )["result"]
    url = f"{daemon.url}{made['image']['url']}"
    result = succeeded(client, "describe", {"image": url, "detail": "normal", "remember": False})["result"]
    assert "image" in result["description"] and result["image"]["path"].endswith("input.png")


def test_a_bad_image_is_a_400_at_submit(client):
    for image in ("data:image/png;base64,bm90IGFuIGltYWdl", "https://example.com/cat.png"):
        r = client.post("/v1/pipelines/describe", json={"image": image})
        assert r.status_code == 400, image


# --- retrieval ------------------------------------------------------------------------------------


def test_retrieval_returns_the_nearest_item_on_a_constructed_case(client):
    """Three pictures are remembered; a near copy of one of them finds it first, by image and by
    a story's retrieval; three stories likewise by text."""
    colours = {"red": (220, 30, 30), "blue": (30, 70, 210), "green": (40, 170, 60)}
    paths = {}
    for name, rgb in colours.items():
        paths[name] = succeeded(client, "describe", {"image": data_uri(picture(rgb))})["result"]["image"]["path"]
    near_blue = data_uri(picture((40, 80, 200), mark=30))  # a slightly different blue, marked elsewhere
    hits = client.post("/v1/rag/search", json={"image": near_blue, "collection": "images", "k": 3}).json()
    assert hits["models"] == ["p-vision"] and hits["data"][0]["path"] == paths["blue"]

    result = succeeded(client, "image_to_story", {"image": near_blue, "k": 2})["result"]
    images = [h for h in result["retrieved"] if h["collection"] == "images"]
    assert images[0]["path"] == paths["blue"] and images[0]["score"] > images[1]["score"]
    assert result["retrieval_error"] is None and result["story"]

    prompts = [
        "a dragon who bakes bread in a mountain village",
        "a robot learning to paint sunflowers",
        "a submarine crew meets a singing whale",
    ]
    jobs = {p: succeeded(client, "story", {"prompt": p, "target_words": 40})["id"] for p in prompts}
    hits = client.post(
        "/v1/rag/search", json={"text": "robot paint sunflowers", "collection": "stories", "k": 1}
    ).json()
    assert hits["data"][0]["job_id"] == jobs["a robot learning to paint sunflowers"]
    result = succeeded(
        client,
        "story_to_image",
        {"story": "The robot learned to paint sunflowers at dawn.", "width": 64, "height": 64, "k": 1},
    )["result"]
    stories = [h for h in result["retrieved"] if h["collection"] == "stories"]
    assert stories[0]["job_id"] == jobs["a robot learning to paint sunflowers"]


def test_story_to_image_lists_retrieved_items_and_uses_past_prompts_as_guidance(client):
    first = succeeded(
        client,
        "story_to_image",
        {
            "story": "A purple owl reads by candlelight in an old tower.",
            "style": "ink and watercolour",
            "width": 64,
            "height": 64,
        },
    )
    second = succeeded(
        client,
        "story_to_image",
        {"story": "The purple owl closed the book and slept in the tower.", "width": 64, "height": 64, "k": 3},
    )["result"]
    first_prompt = first["result"]["prompt"]
    assert first_prompt in second["guidance"]
    retrieved_jobs = {h["job_id"] for h in second["retrieved"]}
    assert first["id"] in retrieved_jobs
    assert client.get(second["image"]["url"]).headers["content-type"] == "image/png"
    assert second["models"] == {"llm": "p-llm", "image": "p-image", "embedding": "p-vision", "rerank": None}


def test_rag_routes_stats_and_validation(client):
    stats = client.get("/v1/rag/stats").json()
    assert {"stories", "images"} <= set(stats["collections"]) and stats["backend"] == "faiss"
    for index in stats["indices"]:
        assert index["model"] == "p-vision" and index["dim"] == 384 and index["type"] == "flat"
        assert index["indexed"] == index["count"] > 0
    assert client.post("/v1/rag/search", json={"k": 3}).status_code == 400
    assert client.post("/v1/rag/search", json={"text": "x", "image": "y"}).status_code == 400
    assert client.post("/v1/rag/search", json={"text": "x", "model": "nope"}).status_code == 404
    assert client.post("/v1/rag/search", json={"text": "x", "model": "p-llm"}).status_code == 400
    assert client.post("/v1/rag/search", json={"text": "x", "collection": "nothing-here"}).json()["data"] == []


# --- illustrated story ------------------------------------------------------------------------------


def test_illustrated_story_merges_the_character_into_the_background(client):
    job = succeeded(
        client, "illustrated_story", {"prompt": "a knight and a kind dragon", "width": 128, "height": 128, "seed": 5}
    )
    result = job["result"]
    assert not result["degraded"] and result["errors"] == [] and result["story"]
    assert result["character_description"] and result["background_description"]
    images = {k: v["path"] for k, v in result["images"].items()}
    combined, background = fetch_image(client, images["combined"]), fetch_image(client, images["background"])
    character, mask = fetch_image(client, images["character"]), fetch_image(client, images["mask"], "L")
    outside, inside = mask == 0, mask == 255
    assert outside.any() and inside.any()
    assert np.array_equal(combined[outside], background[outside])  # the background elsewhere
    assert (np.abs(combined[inside] - background[inside]).sum(axis=1) > 0).mean() > 0.9
    assert not np.array_equal(combined, character) and not np.array_equal(combined, background)
    assert result["composite"]["method"] in ("border-colour", "ellipse")
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        progress = [
            (e["data"]["data"]["progress"], e["data"]["data"]["stage"])
            for e in sse_events(r)
            if e["event"] == "progress"
        ]
    assert progress[:9] == [
        (0, "pending"),
        (10, "generating_story"),
        (30, "generating_story"),
        (40, "generating_story"),
        (50, "generating_images"),
        (70, "generating_images"),
        (85, "generating_images"),
        (90, "generating_images"),
        (95, "indexing"),
    ]
    assert progress[-1] == (100, "completed")


def test_illustrated_story_delivers_the_story_when_images_fail(client):
    job = succeeded(
        client,
        "illustrated_story",
        {"prompt": "a lonely comet", "image_model": "p-broken-image", "width": 64, "height": 64},
    )
    result = job["result"]
    assert result["story"] and result["degraded"]
    assert all(v is None for v in result["images"].values())
    assert [e["stage"] for e in result["errors"]] == ["character image", "background image"]
    assert all("caught fire" in e["message"] for e in result["errors"])
    assert client.get(result["files"]["text"]["url"]).status_code == 200
    assert "story delivered" in job["message"] or job["stage"] == "done"


# --- persona --------------------------------------------------------------------------------------------


def test_persona_upsert_by_name_keeps_images_and_motto_history(client):
    first = succeeded(
        client,
        "persona",
        {
            "name": "Captain Nova",
            "prompt": "a space pirate with a green coat",
            "motto_tone": "rebellious",
            "width": 64,
            "height": 64,
        },
    )["result"]
    assert first["created"] and first["images_count"] == 1 and first["motto"]
    second = succeeded(
        client,
        "persona",
        {
            "name": "captain  NOVA",
            "prompt": "a space pirate with a green coat",
            "motto_tone": "wise",
            "width": 64,
            "height": 64,
            "seed": 9,
        },
    )["result"]
    assert not second["created"] and second["existed_before"] and second["images_count"] == 2
    assert second["mottos_count"] == 2

    listed = client.get("/v1/personas").json()["data"]
    nova = next(p for p in listed if p["key"] == "captain nova")
    assert nova["images_count"] == 2 and nova["motto_tone"] == "wise" and nova["image"]["url"]

    persona = client.get(f"/v1/personas/{quote('Captain Nova')}").json()
    assert persona["name"] == "Captain Nova" and persona["key"] == "captain nova"  # as first written
    assert [m["tone"] for m in persona["mottos"]] == ["rebellious", "wise"]
    assert [m["motto"] for m in persona["mottos"]] == [first["motto"], second["motto"]]
    assert persona["motto"] == second["motto"]
    assert len(persona["images"]) == 2 and persona["images"][0]["path"] != persona["images"][1]["path"]
    for image in persona["images"]:
        r = client.get(image["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert image["path"].startswith("images/personas/")  # outlives job retention
    assert client.get("/v1/personas/nobody-here").status_code == 404


# --- artefact search ------------------------------------------------------------------------------------


def test_artifacts_are_searchable_by_pipeline_time_and_text(client):
    t0 = time.time()
    job = succeeded(client, "story", {"prompt": "a zeppelin captain and her parrot", "target_words": 40})
    found = client.get("/v1/artifacts", params={"q": "zeppelin parrot"}).json()["data"]
    assert {a["name"] for a in found if a["job_id"] == job["id"]} == {"story.txt", "story.json"}
    assert all(a["pipeline"] == "story" for a in found)
    assert client.get("/v1/artifacts", params={"q": "zeppel"}).json()["data"]  # prefixes match
    by_pipeline = client.get("/v1/artifacts", params={"pipeline": "translate"}).json()["data"]
    assert by_pipeline and all(a["pipeline"] == "translate" for a in by_pipeline)
    recent = client.get("/v1/artifacts", params={"since": t0 - 0.001}).json()["data"]
    assert {a["job_id"] for a in recent} == {job["id"]}
    assert client.get("/v1/artifacts", params={"since": time.time() + 60}).json()["data"] == []
    images = client.get("/v1/artifacts", params={"media_type": "image/", "limit": 5}).json()
    assert images["data"] and all(a["media_type"].startswith("image/") for a in images["data"])
    assert images["has_more"]
    assert all(a["name"] != "metadata.json" for a in client.get("/v1/artifacts", params={"limit": 200}).json()["data"])
    assert client.get("/v1/artifacts", params={"since": "yesterday"}).status_code == 400
    hit = found[0]
    assert client.get(hit["url"]).status_code == 200 and "snippet" in hit
