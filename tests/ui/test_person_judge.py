"""A person as the beam search's pairwise judge, in the browser: the job waits for each choice
made on the evaluation page and ranks by them; nobody answering, it falls back to the scores."""

from __future__ import annotations

import time

from tests.integration.jobs_support import small, start, wait

PAIRWISE = {"beam_width": 2, "keep_top": 1, "iterations": 2, "ranking": "pairwise", "judge": "person"}


def test_a_job_waits_for_the_choices_made_on_the_page(page, ui_daemon, api):
    job = start(api, small(prompt="a kite over the sea", **PAIRWISE, judge_timeout=120))
    job_id = job["id"]
    page.goto(f"{ui_daemon.url}/ui/jobs/{job_id}")
    # The job page shows, live, that the job waits for a person.
    page.locator("#job-head a:text('choose now')").click()
    page.wait_for_selector("#ab-form")
    chosen: dict[str, tuple[str, str]] = {}
    while page.locator("#ab-form input[name='question']").count():
        question = page.locator("#ab-form input[name='question']").input_value()
        left = page.locator("#ab-form input[name='a_candidate']").input_value()
        right = page.locator("#ab-form input[name='b_candidate']").input_value()
        assert page.locator("#pair-prompt").inner_text() == "a kite over the sea"
        if not chosen:  # the job really waits: still running, the question still open
            time.sleep(1.0)
            assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
            waiting = api.get("/v1/evaluations/questions", params={"job_id": job_id}).json()["data"]
            assert [q["id"] for q in waiting] == [question]
        page.fill("#reason", f"{left} has more sky")
        page.click("#choose-a")
        chosen[question] = (left, right)
        # The next question of the job as soon as it asks, else the evaluation page.
        page.wait_for_function(
            "q => document.querySelector('#ab-form input[name=question]')?.value !== q"
            " && (document.querySelector('#ab-form') || document.querySelector('#questions'))",
            arg=question,
        )
    done = wait(api, job_id, timeout=30)
    assert done["state"] == "succeeded", done
    assert len(chosen) == done["result"]["comparisons"]["total"] >= 2

    # Each choice decided its pair, with the person's reason, and is an evaluation like any other.
    nodes = {n["id"]: n for n in api.get(f"/v1/jobs/{job_id}/lineage").json()["nodes"]}
    records = [e for e in api.get("/v1/evaluations", params={"job_id": job_id}).json()["data"] if e["question"]]
    assert {e["question"] for e in records} == set(chosen)
    for e in records:
        left, right = chosen[e["question"]]
        assert e["source"] == "judge" and e["preferred"]["candidate"] == left
        verdict = next(c for c in nodes[left]["comparisons"] if c["opponent"] == right)
        assert (verdict["result"], verdict["decided_by"], verdict["reason"]) == ("win", "judge", f"{left} has more sky")
    page.goto(f"{ui_daemon.url}/ui/jobs/{job_id}/lineage")
    assert page.locator(".verdicts td:text('judge')").count() == 2 * len(chosen)


def test_nobody_choosing_falls_back_to_the_scores(page, ui_daemon, api):
    page.goto(f"{ui_daemon.url}/ui/evaluate")
    page.wait_for_selector("#questions", state="attached")
    job = start(api, small(**PAIRWISE, judge_timeout=1))
    # The question shows up on the open evaluation page, live, then goes when its time is up.
    page.locator(f"#questions li:has-text('{job['id']}')").first.wait_for()
    done = wait(api, job["id"], timeout=60)
    assert done["state"] == "succeeded", done
    verdicts = [c for n in api.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"] for c in n["comparisons"]]
    assert verdicts and all(c["decided_by"] == "scores" for c in verdicts)
    assert all(c["reason"] == "no choice within 1 s; the scores decide" for c in verdicts)
    page.wait_for_function(f"!document.querySelector('#questions')?.textContent.includes('{job['id']}')")
