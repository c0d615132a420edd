"""A/B evaluation in the browser: a person picks one of two images, the preference is found
through the API (list and JSONL export), next pairs are new, and two jobs' winners compare."""

from __future__ import annotations

import json

import pytest

from tests.integration.jobs_support import small, start, wait

from .conftest import HOSTILE, click_and_wait


@pytest.fixture(scope="module")
def two_jobs(api):
    jobs = []
    for seed in (11, 12):
        job = start(api, small(prompt="a lighthouse on a cliff", seed=seed, beam_width=3, keep_top=2, iterations=2))
        jobs.append(job["id"])
    for job_id in jobs:
        assert wait(api, job_id)["state"] == "succeeded"
    return jobs


def hidden(page, name: str) -> str:
    return page.locator(f"#ab-form input[name='{name}']").input_value()


def test_choose_in_a_pair_and_find_it_through_the_api(page, ui_daemon, api, two_jobs):
    job_id = two_jobs[0]
    page.goto(f"{ui_daemon.url}/ui/evaluate/pair?job={job_id}")
    assert page.locator("#pair-prompt").inner_text() == "a lighthouse on a cliff"
    left, right = hidden(page, "a_candidate"), hidden(page, "b_candidate")
    assert left != right
    # Both images are shown whole, and loaded.
    assert page.evaluate("Array.from(document.querySelectorAll('.pair img')).every(i => i.naturalWidth === 64)")
    page.fill("#reason", f"left is sharper {HOSTILE}")
    click_and_wait(page, "#choose-a")
    assert page.locator(".notice:text('Saved')").count() == 1

    records = api.get("/v1/evaluations", params={"job_id": job_id}).json()["data"]
    mine = [r for r in records if r["reason"] == f"left is sharper {HOSTILE}"]
    assert len(mine) == 1
    record = mine[0]
    assert record["choice"] == "a" and record["source"] == "ui"
    assert (record["a"]["candidate"], record["b"]["candidate"]) == (left, right)
    assert record["preferred"]["candidate"] == left and record["prompt"] == "a lighthouse on a cliff"
    # The next pair is one nobody judged yet.
    assert {hidden(page, "a_candidate"), hidden(page, "b_candidate")} != {left, right}

    click_and_wait(page, "#choose-tie")
    assert api.get("/v1/evaluations", params={"job_id": job_id}).json()["data"][0]["choice"] == "tie"

    # Exported as JSONL, and listed on the page with the reason as text.
    lines = api.get("/v1/evaluations/export").text.splitlines()
    assert record["id"] in {json.loads(line)["id"] for line in lines}
    page.goto(f"{ui_daemon.url}/ui/evaluate")
    assert page.locator(f"#ev-{record['id']}").inner_text().count(HOSTILE) == 1
    assert page.evaluate("window.__pwned") is None


def test_the_winners_of_two_jobs(page, ui_daemon, api, two_jobs):
    a_job, b_job = two_jobs
    page.goto(f"{ui_daemon.url}/ui/evaluate")
    page.select_option("#ev-a", a_job)
    page.select_option("#ev-b", b_job)
    click_and_wait(page, "form:has(#ev-a) button[type=submit]")
    right_job = hidden(page, "b_job")
    click_and_wait(page, "#choose-b")
    assert page.locator(".notice:text('Saved')").count() == 1
    record = api.get("/v1/evaluations", params={"job_id": right_job}).json()["data"][0]
    winners = {j: api.get(f"/v1/jobs/{j}/lineage").json()["winner"] for j in two_jobs}
    assert record["preferred"]["job_id"] == right_job
    assert record["preferred"]["candidate"] == winners[right_job]
    assert {record["a"]["job_id"], record["b"]["job_id"]} == set(two_jobs)


def test_record_a_preference_through_the_api(api, two_jobs):
    job_id = two_jobs[1]
    nodes = api.get(f"/v1/jobs/{job_id}/lineage").json()["nodes"]
    body = {"a": {"job_id": job_id, "candidate": nodes[0]["id"]}, "b": {"job_id": job_id}, "choice": "b"}
    r = api.post("/v1/evaluations", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["b"]["candidate"] == api.get(f"/v1/jobs/{job_id}/lineage").json()["winner"]
    bad = api.post("/v1/evaluations", json={**body, "choice": "left"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "choice"
    missing = api.post("/v1/evaluations", json={**body, "a": {"job_id": job_id, "candidate": "nope"}})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "a.candidate"
    assert api.get("/v1/evaluations/questions").json() == {"object": "list", "data": []}
    gone = api.post("/v1/evaluations", json={"question": "q_nope", "choice": "a"})
    assert gone.status_code == 409 and gone.json()["error"]["param"] == "question"
    neither = api.post("/v1/evaluations", json={"choice": "a"})
    assert neither.status_code == 400 and neither.json()["error"]["param"] == "a"
