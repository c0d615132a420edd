"""Seed 004 on local models only, through a live daemon over HTTP: the documented local set-up
(``docs/beam-search-local.toml``: SmolLM2 on llama.cpp for the prompts, Stable Diffusion through
diffusers, open_clip with a LAION-style aesthetic head as the scorer, BLIP as the describer, a
LLaVA as the judge) with each model's weights swapped for the tiny random ones of
``tiny_models`` (SmolLM2 is the real, shipped one). Three iterations, N=4, M=2: the lineage is
complete and ``metadata.json`` has the seed's shape; a pairwise run asks the LLaVA judge."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import ROOT, Daemon, write_config
from tests.integration.jobs_support import start, wait

# ~2 minutes of CPU on two idle cores (SmolLM2's 32 answers are most of it); more when they are shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

N, M, ITERATIONS = 4, 2, 3
TINY_OPTIONS = {
    "sd-turbo": 'options = {{ model = "{sd}", steps = 2 }}',
    "clip-aesthetic": 'options = {{ model = "{clip}", aesthetic_head = "{aesthetic_head}" }}',
    "blip-caption": 'options = {{ model = "{blip}" }}',
    "llava-judge": 'options = {{ model = "{llava}", max_new_tokens = 24 }}',
}


def local_config(tiny: dict) -> str:
    """The documented set-up, each model's options pointed at its tiny stand-in."""
    text = (ROOT / "docs" / "beam-search-local.toml").read_text()
    blocks = text.split("[[models]]")
    for i, block in enumerate(blocks[1:], 1):
        model_id = re.search(r'^id = "([^"]+)"', block, re.MULTILINE).group(1)
        if model_id in TINY_OPTIONS:
            options = TINY_OPTIONS[model_id].format(**{k: str(v) for k, v in tiny.items()})
            blocks[i] = re.sub(r"^options = .*$", lambda _, o=options: o, block, count=1, flags=re.MULTILINE)
    return "[[models]]".join(blocks)


@pytest.fixture(scope="module")
def daemon(tiny_models, offline_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beam-local")
    d = Daemon(write_config(tmp / "loom.toml", local_config(tiny_models)), tmp / "data", env=offline_env(tmp))
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    with httpx.Client(base_url=daemon.url, timeout=60) as c:
        yield c


def params(**kw) -> dict:
    # Alternate refinement and short answers keep SmolLM2's share of the run small.
    base = {"prompt": "a red apple on a wooden table", "width": 64, "height": 64, "seed": 5, "max_tokens": 32}
    return {**base, "refine": "alternate", **kw}


@pytest.fixture(scope="module")
def run(client):
    job = start(client, params(beam_width=N, keep_top=M, iterations=ITERATIONS))
    done = wait(client, job["id"], timeout=600)
    assert done["state"] == "succeeded", done["error"]
    lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
    meta = client.get(f"/v1/files/{done['output_dir']}/metadata.json").json()
    return done, lineage, meta


def test_every_role_ran_on_its_own_local_model(run):
    done, _, _ = run
    assert done["result"]["models"] == {
        "llm": "smollm2-135m",
        "image": "sd-turbo",
        "scorer": "clip-aesthetic",
        "describer": "blip-caption",
        "judge": None,
    }
    by_model = done["usage"]["by_model"]
    for model in ("smollm2-135m", "sd-turbo", "clip-aesthetic", "blip-caption"):
        assert by_model[model]["calls"] > 0, model
    assert done["result"]["failed"] == 0
    seconds = {k: round(v["seconds"], 1) for k, v in done["timings"]["by_capability"].items()}
    print(f"\nlocal beam search N={N} M={M} x{ITERATIONS}: {done['timings']['run_seconds']:.0f}s, {seconds}")


def test_the_lineage_is_complete(run):
    done, lineage, _ = run
    nodes = {n["id"]: n for n in lineage["nodes"]}
    assert len(nodes) == N * ITERATIONS
    for n in nodes.values():
        assert n["status"] == "scored" and n["image"] and n["combined"].strip()
        assert 0 <= n["clip"] <= 1 and 0 <= n["aesthetic"] <= 10 and n["score"] is not None
        if n["iteration"]:
            parent = nodes[n["parent"]]
            assert n["iteration"] - 1 in parent["kept_in"]
            assert isinstance(parent["description"], str)  # BLIP's words, whatever a random BLIP says
            (dim,) = n["critique"]
            assert n["critique"][dim]["critique"] and n["critique"][dim]["recommendation"]
    for k in range(ITERATIONS):
        assert len([n for n in nodes.values() if k in n["kept_in"]]) == M
    assert lineage["winner"] == done["result"]["winner"]["id"]
    assert nodes[lineage["path"][0]]["parent"] is None and lineage["path"][-1] == lineage["winner"]


def test_metadata_json_has_the_seeds_shape(run):
    _, lineage, meta = run
    assert {"sessionId", "timestamp", "userPrompt", "config", "iterations", "finalWinner", "lineage"} <= set(meta)
    assert meta["userPrompt"] == params()["prompt"] and meta["config"]["beam_width"] == N
    assert [it["iteration"] for it in meta["iterations"]] == list(range(ITERATIONS))
    for it in meta["iterations"]:
        assert {"dimension", "candidates", "bestCandidateId", "bestScore"} <= set(it)
        assert [c["candidateId"] for c in it["candidates"]] == list(range(N))
        for c in it["candidates"]:
            assert isinstance(c["whatPrompt"], str) and isinstance(c["howPrompt"], str) and c["combined"]
            assert c["status"] == "completed" and isinstance(c["survived"], bool)
            assert c["image"]["localPath"].endswith(".png") and c["image"]["url"].startswith("/v1/files/")
            ev = c["evaluation"]
            assert 0 <= ev["alignmentScore"] <= 100 and 0 <= ev["aestheticScore"] <= 10
            expected = 0.7 * ev["alignmentScore"] + 0.3 * 10 * ev["aestheticScore"]
            assert c["totalScore"] == pytest.approx(expected, abs=1e-3)  # alignmentScore is rounded
            assert (c["parentId"] is None) == (it["iteration"] == 0)
    winner = next(n for n in lineage["nodes"] if n["id"] == lineage["winner"])
    assert meta["finalWinner"]["candidateId"] == winner["index"]
    assert meta["finalWinner"]["iteration"] == winner["iteration"]
    assert meta["finalWinner"]["totalScore"] == winner["score"]
    assert [(s["iteration"], s["candidateId"]) for s in meta["lineage"]][-1] == (winner["iteration"], winner["index"])


def test_pairwise_ranking_asks_the_local_judge(client):
    # One ranking of two images (the merge with parents is tested against the fake judge).
    job = start(client, params(beam_width=2, keep_top=1, iterations=1, ranking="pairwise"))
    done = wait(client, job["id"], timeout=600)
    assert done["state"] == "succeeded", done["error"]
    result = done["result"]
    assert result["models"]["judge"] == "model:llava-judge"
    c = result["comparisons"]
    assert c["by_iteration"] == [1] == c["bound_by_iteration"]
    assert done["usage"]["by_model"]["llava-judge"]["calls"] == c["total"]
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    verdicts = [v for n in nodes for v in n["comparisons"]]
    assert len(verdicts) == 2
    # A random LLaVA rarely answers in the format: then the pair falls back to the scores, and says so.
    assert all(v["decided_by"] in ("judge", "scores") and v["reason"] for v in verdicts)
    assert c["undecided"] == sum(1 for v in verdicts if v["decided_by"] == "scores") // 2
    assert not any("the judge failed" in v["reason"] for v in verdicts), verdicts
