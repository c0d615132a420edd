"""The job page shows a running job's latest image preview (a real browser on the mock models)."""

from __future__ import annotations

import io
import time

from PIL import Image

from tests.integration.jobs_support import small, sse_events, start, wait


def test_a_running_image_job_shows_its_latest_preview(page, ui_daemon, api):
    # The slow mock image model (250 ms an image, in 4 steps) sends 2 previews of each image.
    job = start(api, small(beam_width=3, keep_top=2, iterations=2, width=96, height=96, image_model="bs-slow-image"))
    page.goto(f"{ui_daemon.url}/ui/jobs/{job['id']}")
    page.wait_for_selector("#job-preview img")
    # The thumbnail is served and loads, at most 192 px a side; the caption says what it is.
    deadline = time.monotonic() + 30
    while not page.evaluate(
        "(() => { const i = document.querySelector('#job-preview img'); "
        "return !!i && i.complete && i.naturalWidth > 0; })()"
    ):
        assert time.monotonic() < deadline, "the preview never loaded"
        time.sleep(0.05)
    size = page.evaluate(
        "(() => { const i = document.querySelector('#job-preview img'); return [i.naturalWidth, i.naturalHeight]; })()"
    )
    assert size == [96, 96]
    caption = page.locator("#job-preview figcaption").inner_text()
    assert "bs-slow-image" in caption and "96×96" in caption and "of 2" in caption
    # Over the job's events API: preview events with a small payload naming the file.
    done = wait(api, job["id"])
    assert done["state"] == "succeeded"
    page.wait_for_selector("#job-preview", state="detached")  # a finished job shows its outputs instead
    with api.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        previews = [e["data"]["data"] for e in sse_events(r) if e["event"] == "preview"]
    # 2 previews of each image the job made.
    images = [a for a in done["artifacts"] if a["media_type"] == "image/png"]
    assert len(images) >= 3 and len(previews) == 2 * len(images), (len(images), previews)
    indices = [p["index"] for p in previews]
    assert indices.count(0) == indices.count(1) == len(images)
    assert all(p["model"] == "bs-slow-image" and (p["width"], p["height"]) == (96, 96) for p in previews)
    thumb = api.get(f"/v1/files/{previews[-1]['path']}")
    img = Image.open(io.BytesIO(thumb.content))
    assert img.format == "JPEG" and max(img.size) <= 192 and len(thumb.content) < 20_000
