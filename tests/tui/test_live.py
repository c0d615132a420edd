"""The TUI under Pilot against a live daemon (mock models, a 300 MiB CPU budget): it shows a load
and an eviction, a job's progress, a finished beam search's lineage; cancelling from the TUI
cancels the job; and it reconnects by itself when the daemon restarts under it."""

from __future__ import annotations

import time

import httpx
import pytest
from loom.tui.app import LoomApp
from loom.tui.screens import JobsScreen, LineageScreen
from loom.tui.screens.base import selected_key
from loom.tui.widgets import LineageTree, StatusBar, VramBar
from loom.tui.widgets.image_view import HalfBlockImage
from textual.widgets import DataTable

from .conftest import until

pytestmark = pytest.mark.usefixtures("live_clock")

SLOW = {
    "prompt": "a red apple",
    "width": 64,
    "height": 64,
    "seed": 3,
    "image_model": "bs-slow-image",
    "beam_width": 2,
    "keep_top": 1,
    "iterations": 4,
}
FAST = {
    "prompt": "a red apple on a wooden table",
    "width": 64,
    "height": 64,
    "seed": 7,
    "beam_width": 3,
    "keep_top": 2,
    "iterations": 2,
}


@pytest.fixture
def http(tui_daemon):
    with httpx.Client(base_url=tui_daemon.url, timeout=30) as client:
        yield client


def start(http: httpx.Client, params: dict) -> str:
    r = http.post("/v1/pipelines/beam_search", json=params)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def cells(app: LoomApp, selector: str) -> list[str]:
    table = app.screen.query_one(selector, DataTable)
    return [" ".join(str(c) for c in table.get_row(row.key)) for row in table.ordered_rows]


def cpu_bar(app: LoomApp) -> str:
    bars = [b for b in app.screen.query(VramBar) if b.device["name"] == "cpu"]
    return str(bars[0].render()) if bars else ""


def resident(app: LoomApp) -> set[str]:
    return {r["model"] for _, r in app.state.resident()}


async def test_dashboard_shows_a_load_and_an_eviction(tui_daemon, http):
    http.post("/admin/models/tui-b/unload")
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.connected and app.state.scheduler, what="connected")
        assert http.post("/admin/models/tui-a/load").status_code == 200
        # The bar gets a tui-a segment, and the resident table a row.
        await until(pilot, lambda: "tui-a" in cpu_bar(app), what="a tui-a segment in the VRAM bar")
        await until(
            pilot,
            lambda: any(r.startswith("tui-a cpu 200 MiB") for r in cells(app, "#resident")),
            what="tui-a in the resident table",
        )

        # tui-b does not fit beside tui-a: loading it evicts tui-a, and the dashboard follows.
        assert http.post("/admin/models/tui-b/load").status_code == 200
        await until(pilot, lambda: "tui-b" in cpu_bar(app) and "tui-a" not in cpu_bar(app), what="eviction")
        rows = cells(app, "#resident")
        assert any(r.startswith("tui-b") for r in rows) and not any(r.startswith("tui-a") for r in rows)
        assert any(line.kind == "evicted" and "tui-a" in line.text for line in app.state.log)


async def test_dashboard_shows_a_jobs_progress(tui_daemon, http):
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.connected, what="connected")
        job_id = start(http, SLOW)
        job = lambda: app.state.jobs.get(job_id, {})  # noqa: E731
        await until(
            pilot,
            lambda: 0 < (job().get("progress") or 0) < 100 and job().get("state") == "running",
            what="progress between 0 and 100",
        )
        shown = lambda: [r for r in cells(app, "#running") if job_id in r and "%" in r]  # noqa: E731
        await until(pilot, shown, what="the job's progress on the dashboard")
        assert "beam_search" in shown()[0]
        http.post(f"/v1/jobs/{job_id}/cancel")


async def test_cancel_from_the_jobs_screen(tui_daemon, http):
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.connected, what="connected")
        job_id = start(http, SLOW)
        await pilot.press("2")
        assert isinstance(app.screen, JobsScreen)
        await until(pilot, lambda: app.state.jobs.get(job_id, {}).get("state") == "running", what="running")
        table = app.screen.query_one("#jobs", DataTable)
        await until(pilot, lambda: job_id in [r.key.value for r in table.ordered_rows], what="row")
        table.move_cursor(row=table.get_row_index(job_id))
        assert selected_key(table) == job_id
        await pilot.press("c")
        await until(pilot, lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled", what="cancelled")
        await until(pilot, lambda: app.state.jobs[job_id]["state"] == "cancelled", what="the list shows it")


async def test_lineage_of_a_finished_beam_search(tui_daemon, http):
    job_id = start(http, FAST)
    for _ in range(400):
        if http.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded":
            break
        time.sleep(0.05)
    lineage = http.get(f"/v1/jobs/{job_id}/lineage").json()
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: job_id in app.state.jobs, what="job listed")
        await pilot.press("2")
        table = app.screen.query_one("#jobs", DataTable)
        await until(pilot, lambda: job_id in [r.key.value for r in table.ordered_rows], what="row")
        table.move_cursor(row=table.get_row_index(job_id))
        await pilot.press("n")
        assert isinstance(app.screen, LineageScreen)
        tree = app.screen.query_one(LineageTree)
        # N=3, M=2: 3 candidates, then floor(3/2) = 1 child for each of the 2 parents.
        assert len(lineage["nodes"]) == 5
        await until(pilot, lambda: len(tree.nodes) == 5, what="all candidates")
        await until(pilot, lambda: tree.selected_id == lineage["winner"], what="winner selected")
        labels = [str(n.label) for n in tree._by_id.values()]
        assert sum(label.startswith("★") for label in labels) == 1
        assert sum(label.startswith(("✓", "★")) for label in labels) >= 2  # kept ones are marked
        text = str(app.screen.query_one("#candidate").render())
        winner = next(n for n in lineage["nodes"] if n["id"] == lineage["winner"])
        assert "★ winner" in text and winner["what"] in text and winner["how"] in text
        assert f"{winner['score']:.2f}" in text
        for dim, critique in (winner["critique"] or {}).items():
            assert f"Critique ({dim.upper()})" in text and critique["critique"][:20] in text
        picture = app.screen.query_one(HalfBlockImage)
        await until(pilot, lambda: picture.image is not None, what="the winner's image")
        assert picture.image.size == (64, 64)


async def test_lineage_updates_while_the_job_runs(tui_daemon, http):
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 24)) as pilot:
        job_id = start(http, SLOW)
        app.open_lineage(job_id)
        await until(
            pilot,
            lambda: isinstance(app.screen, LineageScreen) and app.screen.query(LineageTree),
            what="lineage screen",
        )
        tree = app.screen.query_one(LineageTree)
        await until(pilot, lambda: tree.nodes, what="the first candidates")
        assert http.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
        await until(
            pilot,
            lambda: any(n.get("iteration") == 1 for n in tree.nodes.values()),
            timeout=15,
            what="candidates of iteration 1, as they come",
        )
        await until(pilot, lambda: 1 in tree._iterations, what="drawn under their iteration")
        http.post(f"/v1/jobs/{job_id}/cancel")


async def test_reconnects_when_the_daemon_restarts(tui_daemon, http):
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.connected, what="connected")
        http.post("/admin/models/tui-a/load")
        await until(pilot, lambda: "tui-a" in resident(app), what="tui-a resident")
        status = app.screen.query_one(StatusBar)

        tui_daemon.stop(kill=True)
        await until(pilot, lambda: not app.state.connected, what="noticed the daemon is gone")
        await pilot.pause(0.1)
        assert status.has_class("-down") and f"lost {tui_daemon.url}" in status.text
        # It keeps trying, and says why it cannot get through.
        await until(pilot, lambda: "connection refused · retrying" in status.text, what="the reason")

        tui_daemon.start()
        await until(pilot, lambda: app.state.connected, timeout=20, what="reconnected")
        # A new daemon: nothing resident, and the dashboard shows that rather than the old state.
        await until(pilot, lambda: "tui-a" not in resident(app), what="fresh snapshot")
        assert not status.has_class("-down")
        http.post("/admin/models/tui-a/load")
        await until(pilot, lambda: "tui-a" in resident(app), what="events flow again")


async def test_job_detail_shows_the_latest_preview_while_the_job_runs(tui_daemon, http):
    job_id = start(http, SLOW)
    app = LoomApp(url=tui_daemon.url)
    async with app.run_test(size=(80, 30)) as pilot:
        await until(pilot, lambda: app.state.connected, what="connected")
        app.open_job(job_id)
        await until(pilot, lambda: app.screen.query("#job-preview"), what="the job screen")
        view = app.screen.query_one("#job-preview")
        picture = view.query_one(HalfBlockImage)
        await until(pilot, lambda: view.display and picture.image is not None, what="a preview")
        assert picture.image.size == (64, 64)  # the thumbnail of a 64x64 image
        assert "bs-slow-image" in str(view.border_subtitle)
        http.post(f"/v1/jobs/{job_id}/cancel")
        await until(pilot, lambda: not view.display, what="the preview hidden once the job ended")
