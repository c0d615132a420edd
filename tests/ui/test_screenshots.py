"""Screenshots of the lineage and A/B pages, as the README shows them.

``LOOM_UI_SCREENSHOTS=docs`` writes them into docs/ (that is how docs/ui-*.png were made);
otherwise they go to a temporary folder and are only checked for being whole pages.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from tests.integration.jobs_support import small, start, wait


def test_screenshots_of_the_lineage_and_evaluation_pages(page, ui_daemon, api, tmp_path):
    out = Path(os.environ.get("LOOM_UI_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    params = small(prompt="a lighthouse on a cliff at dusk", beam_width=3, keep_top=1, iterations=3, seed=5)
    job = start(api, {**params, "width": 160, "height": 160})
    assert wait(api, job["id"])["state"] == "succeeded"
    page.set_viewport_size({"width": 1100, "height": 820})
    shots = {
        "ui-lineage.png": f"/ui/jobs/{job['id']}/lineage",
        "ui-evaluate.png": f"/ui/evaluate/pair?job={job['id']}",
    }
    for name, path in shots.items():
        page.goto(f"{ui_daemon.url}{path}")
        page.wait_for_function(  # the images in view (the rest load lazily)
            "Array.from(document.images).filter(i => i.getBoundingClientRect().top < innerHeight)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=str(out / name))
        with Image.open(out / name) as im:
            assert im.size == (1100, 820)
            assert len(im.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 50  # a page, not a blank
            small_png = im.convert("RGB").quantize(colors=128)  # a third of the bytes, for the repo
        small_png.save(out / name, optimize=True)
