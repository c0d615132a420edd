"""Beam search (seed 004) end to end on the mock providers: lineage invariants, scoring, the
winner, metadata.json, and phase-by-phase submission."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import beam_config, capability_of, small, start, wait

N, M, ITERATIONS, ALPHA = 4, 2, 3, 0.6


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beam")
    d = Daemon(write_config(tmp / "loom.toml", beam_config()), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def run(client):
    job = start(client, small(beam_width=N, keep_top=M, iterations=ITERATIONS, alpha=ALPHA))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
    return done, lineage


def step_keys(client, job_id: str) -> list[str]:
    text = client.get(f"/v1/jobs/{job_id}/events").text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return [e["data"]["key"] for e in events if e["type"] == "step"]


def test_every_iteration_has_n_candidates_and_keeps_m(run):
    _, lineage = run
    nodes = lineage["nodes"]
    assert len(nodes) == N * ITERATIONS
    for k in range(ITERATIONS):
        assert len([n for n in nodes if n["iteration"] == k]) == N
        assert len([n for n in nodes if k in n["kept_in"]]) == M


def test_each_child_descends_from_a_parent_kept_by_the_previous_iteration(run):
    _, lineage = run
    by_id = {n["id"]: n for n in lineage["nodes"]}
    for n in lineage["nodes"]:
        if n["iteration"] == 0:
            assert n["parent"] is None and n["critique"] is None
            continue
        parent = by_id[n["parent"]]
        assert n["iteration"] - 1 in parent["kept_in"], (n["id"], parent)
        assert parent["iteration"] < n["iteration"]
        # The critique the child followed, and the parent's description it was built from.
        assert n["critique"]["critique"] and n["critique"]["recommendation"]
        assert parent["description"]
        # Alternating refinement (the seed's): odd iterations rewrite WHAT, even ones HOW.
        inherited = "how" if n["iteration"] % 2 == 1 else "what"
        assert n["dimension"] == ("what" if inherited == "how" else "how")
        assert n[inherited] == parent[inherited]
    # Children are spread over the parents: N in all, N/M each here.
    for k in range(1, ITERATIONS):
        parents = [n["parent"] for n in lineage["nodes"] if n["iteration"] == k]
        assert sorted(parents.count(p) for p in set(parents)) == [N // M] * M


def test_scores_follow_alpha_and_each_ranking_keeps_the_best(run):
    _, lineage = run
    nodes = lineage["nodes"]
    for n in nodes:
        assert 0 <= n["clip"] <= 1 and 0 <= n["aesthetic"] <= 10
        expected = ALPHA * 100 * n["clip"] + (1 - ALPHA) * 10 * n["aesthetic"]
        assert n["score"] == pytest.approx(expected, abs=1e-4)
        assert n["alignment"] == pytest.approx(100 * n["clip"], abs=1e-3)
    kept_before: list[dict] = []
    for k in range(ITERATIONS):
        pool = kept_before + [n for n in nodes if n["iteration"] == k]
        kept = [n for n in nodes if k in n["kept_in"]]
        best = sorted(pool, key=lambda n: -n["score"])[:M]
        assert {n["score"] for n in kept} == {n["score"] for n in best}
        assert all(n in pool for n in kept)
        kept_before = kept


def test_the_winner_is_the_global_best(run):
    done, lineage = run
    nodes = lineage["nodes"]
    best = max(nodes, key=lambda n: n["score"])
    assert lineage["winner"] == best["id"] == done["result"]["winner"]["id"]
    assert [n["id"] for n in nodes if n["winner"]] == [best["id"]]
    assert ITERATIONS - 1 in best["kept_in"]
    # The path runs from a root of iteration 0 to the winner through parents.
    path = lineage["path"]
    by_id = {n["id"]: n for n in nodes}
    assert path[-1] == best["id"] and by_id[path[0]]["parent"] is None
    assert all(by_id[b]["parent"] == a for a, b in zip(path, path[1:]))
    finalists = done["result"]["finalists"]
    assert [f["id"] for f in finalists][0] == best["id"] and len(finalists) == M


def test_the_tree_holds_every_node_once(run):
    _, lineage = run

    def walk(nodes):
        for n in nodes:
            yield n["id"]
            yield from walk(n["children"])

    ids = list(walk(lineage["tree"]))
    assert sorted(ids) == sorted(n["id"] for n in lineage["nodes"])
    assert all(n["parent"] is None for n in lineage["tree"])


def test_images_and_metadata_are_in_the_dated_session_folder(run, client, daemon):
    done, lineage = run
    out = done["output_dir"]
    assert re.fullmatch(rf"output/\d{{4}}-\d{{2}}-\d{{2}}/ses-\d{{6}}-{done['id']}", out)
    for n in lineage["nodes"]:
        assert n["image"] == f"{out}/{n['id']}.png"
        r = client.get(n["image_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    meta = client.get(f"/v1/files/{out}/metadata.json").json()
    assert meta["sessionId"] == out.rsplit("/", 1)[1] and meta["state"] == "succeeded"
    assert meta["userPrompt"] == small()["prompt"] and meta["config"]["beam_width"] == N
    assert [it["iteration"] for it in meta["iterations"]] == list(range(ITERATIONS))
    assert all(len(it["candidates"]) == N for it in meta["iterations"])
    assert meta["finalWinner"]["candidateId"] == lineage["winner"]
    assert meta["lineage"] == lineage["path"]
    assert meta["tokenUsage"]["total_tokens"] == done["usage"]["total_tokens"]
    assert (daemon.data_dir / out / "metadata.json").is_file()


def test_work_is_submitted_phase_by_phase(run, client):
    done, _ = run
    order = [capability_of(k) for k in step_keys(client, done["id"])]
    swaps = sum(1 for a, b in zip(order, order[1:]) if a != b)
    # Iteration 0: llm -> image -> vision; later ones: (vision) -> llm -> image -> vision.
    assert swaps == 2 + 3 * (ITERATIONS - 1), order
    # Every image of an iteration comes after all its LLM calls and before its evaluations.
    keys = step_keys(client, done["id"])
    for k in range(ITERATIONS):
        mine = [(i, capability_of(key)) for i, key in enumerate(keys) if key.startswith(f"i{k}")]
        first_image = min(i for i, c in mine if c == "image")
        last_image = max(i for i, c in mine if c == "image")
        assert all(i < first_image for i, c in mine if c == "llm")
        assert all(i > last_image for i, c in mine if c == "vision" and not keys[i].endswith("/describe"))


def test_sequential_schedule_submits_item_by_item(client):
    job = start(client, small(beam_width=N, keep_top=M, iterations=2, schedule="sequential"))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    order = [capability_of(k) for k in step_keys(client, job["id"])]
    swaps = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert swaps > 2 + 3 * (2 - 1)
    lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
    assert len(lineage["nodes"]) == N * 2


def test_uneven_beams_share_children_best_parent_first(client):
    job = start(client, small(beam_width=5, keep_top=2, iterations=2, refine="both"))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    children = [n for n in nodes if n["iteration"] == 1]
    assert len(children) == 5
    ranked = sorted((n for n in nodes if 0 in n["kept_in"]), key=lambda n: -n["score"])
    counts = [sum(1 for c in children if c["parent"] == p["id"]) for p in ranked]
    assert counts == [3, 2]
    assert all(c["dimension"] == "what+how" for c in children)
