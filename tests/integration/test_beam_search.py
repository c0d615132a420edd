"""Beam search (seed 004) end to end on the mock providers: lineage invariants, scoring, the
winner, metadata.json, and phase-by-phase submission."""

from __future__ import annotations

import itertools
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
        # Both prompts refined (the default), each by its own critique of the parent, which was
        # built from the parent's description.
        assert n["dimension"] == "what+how"
        for dim in ("what", "how"):
            critique = n["critique"][dim]
            assert critique["critique"] and critique["recommendation"] and critique["dimension"] == dim
        assert parent["description"]
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
    assert all(by_id[b]["parent"] == a for a, b in itertools.pairwise(path))
    finalists = done["result"]["finalists"]
    assert next(f["id"] for f in finalists) == best["id"] and len(finalists) == M


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
    # The seed's names: candidateId is the index within the iteration, lineage a list of steps.
    by_id = {n["id"]: n for n in lineage["nodes"]}
    winner = by_id[lineage["winner"]]
    assert meta["finalWinner"] == {
        "iteration": winner["iteration"],
        "candidateId": winner["index"],
        "totalScore": winner["score"],
        "id": winner["id"],
    }
    assert [step["id"] for step in meta["lineage"]] == lineage["path"]
    assert meta["tokenUsage"]["total_tokens"] == done["usage"]["total_tokens"]
    assert (daemon.data_dir / out / "metadata.json").is_file()


def test_work_is_submitted_phase_by_phase(run, client):
    done, _ = run
    keys = [k for k in step_keys(client, done["id"]) if capability_of(k)]
    order = [capability_of(k) for k in keys]
    swaps = sum(1 for a, b in itertools.pairwise(order) if a != b)
    # Iteration 0: llm -> image -> vision; later ones: (vision) -> llm -> image -> vision.
    assert swaps == 2 + 3 * (ITERATIONS - 1), order
    # Every image of an iteration comes after all its LLM calls and before its evaluations.
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
    order = [c for c in (capability_of(k) for k in step_keys(client, job["id"])) if c]
    swaps = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert swaps > 2 + 3 * (2 - 1)
    lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
    assert len(lineage["nodes"]) == N * 2


def test_uneven_beams_give_each_parent_the_seeds_share(client):
    job = start(client, small(beam_width=5, keep_top=2, iterations=2))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    children = [n for n in nodes if n["iteration"] == 1]
    # The seed's expansion ratio: floor(N/M) = 2 children for each of the 2 parents.
    assert len(children) == 4
    ranked = sorted((n for n in nodes if 0 in n["kept_in"]), key=lambda n: -n["score"])
    counts = [sum(1 for c in children if c["parent"] == p["id"]) for p in ranked]
    assert counts == [2, 2]
    # Ids as the seed numbers them: parent position * ratio + child position.
    first = [c["index"] for c in children if c["parent"] == ranked[0]["id"]]
    assert first == [0, 1]


def test_alternate_refinement_rewrites_one_prompt_per_iteration(client):
    job = start(client, small(beam_width=4, keep_top=2, iterations=3, refine="alternate"))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    by_id = {n["id"]: n for n in client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]}
    for n in by_id.values():
        if n["iteration"] == 0:
            continue
        # The seed's demo schedule: odd iterations rewrite WHAT, even ones HOW.
        rewritten = "what" if n["iteration"] % 2 == 1 else "how"
        kept = "how" if rewritten == "what" else "what"
        assert n["dimension"] == rewritten and list(n["critique"]) == [rewritten]
        assert n[kept] == by_id[n["parent"]][kept]


# --- failures ---------------------------------------------------------------------------------


def test_one_failed_image_per_iteration_does_not_fail_the_job(client, daemon):
    job = start(client, small(beam_width=N, keep_top=M, iterations=ITERATIONS, image_model="bs-flaky-image"))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    result = done["result"]
    assert result["failed"] == ITERATIONS and result["failed_by_iteration"] == [1] * ITERATIONS
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    assert len(nodes) == N * ITERATIONS
    failed = [n for n in nodes if n["status"] == "failed"]
    assert len(failed) == ITERATIONS and {n["iteration"] for n in failed} == set(range(ITERATIONS))
    for n in failed:
        assert n["error"]["stage"] == "image" and n["error"]["message"] == "the mock GPU hiccuped"
        assert n["image"] is None and n["score"] is None and not n["kept_in"] and n["rank"] is None
        assert n["what"] and n["combined"]  # what was attempted is kept
    # Every ranking still kept M, all of them scored.
    for k in range(ITERATIONS):
        kept = [n for n in nodes if k in n["kept_in"]]
        assert len(kept) == M and all(n["status"] == "scored" for n in kept)
    assert sorted(f["id"] for f in result["failures"]) == sorted(n["id"] for n in failed)
    # metadata.json says the same in the seed's words.
    meta = client.get(f"/v1/files/{done['output_dir']}/metadata.json").json()
    records = [c for it in meta["iterations"] for c in it["candidates"]]
    assert sorted(c["id"] for c in records if c["status"] == "failed") == sorted(n["id"] for n in failed)
    assert all(c["error"]["stage"] == "image" for c in records if c["status"] == "failed")
    assert [it["failed"] for it in meta["iterations"]] == [1] * ITERATIONS


def test_failed_scores_fail_their_candidates_only(client):
    job = start(client, small(beam_width=N, keep_top=M, iterations=2, scorer_model="bs-flaky-scorer"))
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    failed = [n for n in nodes if n["status"] == "failed"]
    # Eight scores in all, every third fails: calls 3 and 6.
    assert len(failed) == 2 and all(n["error"]["stage"] == "score" and n["image"] for n in failed)
    assert done["result"]["models"]["scorer"] == "bs-flaky-scorer"


def test_an_iteration_with_no_candidate_left_fails_the_job(client):
    job = start(client, small(beam_width=3, keep_top=1, iterations=2, image_model="bs-broken-image"))
    done = wait(client, job["id"])
    assert done["state"] == "failed"
    assert done["error"]["code"] == "all_candidates_failed"
    assert "iteration 0: every candidate failed (3 of 3)" in done["error"]["message"]
    assert "the mock GPU caught fire" in done["error"]["message"]
    nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
    assert [n["status"] for n in nodes] == ["failed"] * 3
    meta = client.get(f"/v1/files/{done['output_dir']}/metadata.json").json()
    assert meta["state"] == "failed" and [c["status"] for c in meta["iterations"][0]["candidates"]] == ["failed"] * 3


# --- one call for the simple flows ------------------------------------------------------------


def test_wait_answers_with_the_finished_job(client):
    r = client.post("/v1/pipelines/beam_search?wait=30", json=small(beam_width=2, keep_top=1, iterations=1))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "succeeded" and r.json()["result"]["winner"]["id"]
    r = client.post(
        "/v1/pipelines/beam_search",
        json=small(beam_width=2, keep_top=1, iterations=1),
        headers={"Prefer": "respond-async, wait=30"},
    )
    assert r.status_code == 200 and r.headers["preference-applied"] == "wait=30"
    # Not finished within the wait: 202 with the job as it is; the job goes on.
    slow = small(beam_width=2, keep_top=1, iterations=1, image_model="bs-slow-image")
    r = client.post("/v1/pipelines/beam_search?wait=0.05", json=slow)
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
    assert wait(client, r.json()["id"])["state"] == "succeeded"
    r = client.post("/v1/pipelines/beam_search?wait=soon", json=slow)
    assert r.status_code == 400 and r.json()["error"]["param"] == "wait"


def test_sdk_run_follows_progress_and_returns_the_result(daemon):
    from loom.sdk.client import AsyncLoomClient, LoomClient
    from loom.sdk.errors import LoomError

    seen: list[str] = []
    with LoomClient(daemon.url) as sdk:
        result = sdk.run(
            "beam_search", small(beam_width=2, keep_top=1, iterations=2), on_event=lambda e: seen.append(e.event)
        )
        assert result["winner"]["id"] and result["iterations"] == 2
        assert "progress" in seen and "lineage" in seen and seen[-1] == "state"
        with pytest.raises(LoomError) as failure:
            sdk.run("beam_search", small(beam_width=2, keep_top=1, iterations=1, image_model="bs-broken-image"))
        assert failure.value.code == "all_candidates_failed" and failure.value.job["state"] == "failed"

    async def go():
        async with AsyncLoomClient(daemon.url) as sdk:
            return await sdk.run("beam_search", small(beam_width=2, keep_top=1, iterations=1))

    import asyncio

    assert asyncio.run(go())["winner"]["id"]


def test_loom_run_shows_progress_and_prints_the_winner(daemon):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "loom.daemon.cli", "run", "beam_search", "--url", daemon.url]
    args = ["--prompt", "a red apple", "-p", "beam_width=2", "-p", "keep_top=1", "-p", "iterations=2"]
    args += ["-p", "width=64", "-p", "height=64"]
    out = subprocess.run(cmd + args, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("winner i") and "/v1/files/output/" in out.stdout
    assert "100%" in out.stderr and "iteration 1: kept" in out.stderr
    bad = subprocess.run(
        [*cmd, "-p", "beam_widht=2", "--prompt", "x"], capture_output=True, text=True, check=False, timeout=60
    )
    assert bad.returncode == 2 and "beam_widht" in bad.stderr
    failed = subprocess.run(
        cmd + args + ["-p", "image_model=bs-broken-image", "--json-output"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert failed.returncode == 1 and "every candidate failed" in failed.stderr
    assert '"state": "failed"' in failed.stdout
