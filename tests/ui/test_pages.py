"""/ui in a real browser (chromium through Playwright) on the mock models: a beam search started
from its form, watched live, its lineage; the job list; models; pages without JavaScript."""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.jobs_support import small, start, wait

from .conftest import HOSTILE, click_and_wait


def no_injected_script(page) -> None:
    assert page.evaluate("window.__pwned") is None, "a hostile string ran as script"


@pytest.fixture(scope="module")
def finished_job(api):
    job = start(api, small(prompt=HOSTILE, beam_width=3, keep_top=2, iterations=2, width=128, height=128))
    done = wait(api, job["id"])
    assert done["state"] == "succeeded", done
    return done


def test_beam_search_from_the_form_shows_live_progress_and_its_lineage(page, ui_daemon, api):
    page.goto(f"{ui_daemon.url}/ui/pipelines/beam_search")
    page.fill("#f-prompt", HOSTILE)
    for name, value in {"beam_width": "4", "keep_top": "2", "iterations": "3", "width": "96", "height": "96"}.items():
        page.fill(f"#f-{name}", value)
    page.select_option("#f-image_model", "bs-slow-image")  # 250 ms an image: slow enough to watch
    page.click("#pipeline-form button[type=submit]")
    page.wait_for_selector("#job-head progress")
    job_id = page.locator("#job-head h1 code").inner_text()
    page.evaluate("window.__sameDocument = true")

    seen: list[float] = []
    deadline = time.monotonic() + 60
    while True:
        state = page.locator("#job-head .state").inner_text()
        value = float(page.locator("#job-head progress").get_attribute("value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        if state == "succeeded":
            break
        assert state in ("queued", "running"), state
        assert time.monotonic() < deadline, f"still {state} at {seen}"
        time.sleep(0.05)
    # The page was updated in place, over SSE, through several stages of the run.
    assert page.evaluate("window.__sameDocument") is True
    assert len(seen) >= 4, seen
    assert seen == sorted(seen) and seen[-1] == 100.0, seen
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
    page.wait_for_selector("#job-stages td:text('done')")
    assert page.locator("#job-outputs img.thumb").count() == 12

    page.click("#job-head a:text('Lineage')")
    page.wait_for_selector("article.node")
    assert page.locator("article.node").count() == 12
    assert page.locator("article.node.winner").count() == 1
    # Every candidate's full image, loaded; prompts, scores, and the critique its refinement followed.
    loaded = page.evaluate(
        "Array.from(document.querySelectorAll('img.full')).map(i => i.complete && i.naturalWidth === 96)"
    )
    assert loaded == [True] * 12
    assert page.locator("article.node:has(.critique)").count() == 8  # every refined child
    assert page.locator("dl.prompts dd.combined").count() == 12
    lineage = api.get(f"/v1/jobs/{job_id}/lineage").json()
    winner = lineage["winner"]
    best = next(n for n in lineage["nodes"] if n["id"] == winner)
    assert page.locator(f"#node-{winner} .score").inner_text() == f"{best['score']:.2f}"
    # The hostile prompt is text on the page, and ran nowhere.
    assert page.locator(".prompt q").inner_text() == HOSTILE
    no_injected_script(page)


def test_job_list_updates_live(page, ui_daemon, api):
    page.goto(f"{ui_daemon.url}/ui/")
    page.wait_for_selector("#job-rows")
    page.evaluate("window.__sameDocument = true")
    job = start(api, small(beam_width=2, keep_top=1, iterations=1))
    row = page.locator(f"tr[data-job='{job['id']}']")
    row.wait_for()
    page.wait_for_function(
        "id => document.querySelector(`tr[data-job='${id}'] .state`)?.textContent === 'succeeded'", arg=job["id"]
    )
    assert page.evaluate("window.__sameDocument") is True
    assert row.locator("progress").get_attribute("value") == "100.0"


def test_a_refused_form_comes_back_filled_in(page, ui_daemon, api):
    before = len(api.get("/v1/jobs").json()["data"])
    page.goto(f"{ui_daemon.url}/ui/pipelines/beam_search")
    page.fill("#f-prompt", "two pears")
    page.fill("#f-beam_width", "2")
    page.fill("#f-keep_top", "3")
    page.click("#pipeline-form button[type=submit]")
    error = page.locator("#form-error")
    error.wait_for()
    assert "keep_top (3) cannot exceed beam_width (2)" in error.inner_text()
    assert page.input_value("#f-prompt") == "two pears" and page.input_value("#f-keep_top") == "3"
    assert len(api.get("/v1/jobs").json()["data"]) == before


def test_models_load_unload_and_switch(page, ui_daemon, api):
    page.goto(f"{ui_daemon.url}/ui/models")
    row = page.locator("#model-ui-heavy")
    if row.get_attribute("data-loaded") == "yes":
        row.locator("button:text('Unload')").click()
        page.wait_for_selector("#model-ui-heavy[data-loaded='no']")
    page.locator("#model-ui-heavy button:text('Load')").click()
    page.wait_for_selector("#model-ui-heavy[data-loaded='yes']")
    resident = [r["model"] for d in api.get("/admin/scheduler").json()["devices"] for r in d["resident"]]
    assert "ui-heavy" in resident
    page.locator("#model-ui-heavy button:text('Unload')").click()
    page.wait_for_selector("#model-ui-heavy[data-loaded='no']")

    page.select_option("#switch-name", "image")
    page.select_option("#switch-to", "bs-slow-image")
    click_and_wait(page, "#switch-form button[type=submit]")
    assert api.get("/admin/providers").json()["switches"]["capabilities"] == {"image": "bs-slow-image"}
    click_and_wait(page, "li:has-text('image → bs-slow-image') button:text('undo')")
    assert page.locator("li:has-text('image → bs-slow-image')").count() == 0
    assert api.get("/admin/providers").json()["switches"]["capabilities"] == {}


def test_pages_read_and_forms_post_without_javascript(browser, ui_daemon, api, finished_job):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{ui_daemon.url}/ui/pipelines/beam_search")
        page.fill("#f-prompt", "a plain form post")
        page.fill("#f-beam_width", "2")
        page.fill("#f-keep_top", "1")
        page.fill("#f-iterations", "1")
        page.click("#pipeline-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/ui/jobs/[0-9a-f]+$"))
        job_id = page.url.rsplit("/", 1)[1]
        assert wait(api, job_id)["state"] == "succeeded"
        page.goto(f"{ui_daemon.url}/ui/jobs/{finished_job['id']}/lineage")
        nodes = api.get(f"/v1/jobs/{finished_job['id']}/lineage").json()["nodes"]
        assert page.locator("article.node").count() == len(nodes) >= 4
        assert page.locator(".prompt q").inner_text() == HOSTILE
        page.goto(f"{ui_daemon.url}/ui/")
        assert page.locator(f"tr[data-job='{job_id}'] .state").inner_text() == "succeeded"
    finally:
        context.close()
