"""How each screen looks at 80x24, drawn from fixed data (tests/tui/fakes.py) with a frozen clock.

Update after an intended change with ``pytest tests/tui --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from .fakes import CLUSTER, JOB, filled_app


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_dashboard(snap_compare):
    assert snap_compare(filled_app())


def test_dashboard_on_a_cluster(snap_compare):
    assert snap_compare(filled_app(scheduler=CLUSTER))


def test_jobs(snap_compare):
    assert snap_compare(filled_app(), press=["2"])


def test_jobs_filtered(snap_compare):
    assert snap_compare(filled_app(), press=["2", "slash", *"fail", "enter"])


def test_job_detail(snap_compare):
    async def open_job(pilot):
        pilot.app.open_job("0f0f0f0f0f0f")
        await settle(pilot)

    assert snap_compare(filled_app(), run_before=open_job)


def test_lineage(snap_compare):
    async def open_lineage(pilot):
        pilot.app.open_lineage(JOB)
        await settle(pilot)
        await settle(pilot)  # the winner's image loads after the tree is drawn

    assert snap_compare(filled_app(), run_before=open_lineage)


def test_lineage_by_descent(snap_compare):
    async def open_lineage(pilot):
        pilot.app.open_lineage(JOB)
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)

    assert snap_compare(filled_app(), run_before=open_lineage)


def test_models(snap_compare):
    assert snap_compare(filled_app(), press=["3"])


def test_switch_provider_dialog(snap_compare):
    assert snap_compare(filled_app(), press=["3", "down", "s"])


def test_log(snap_compare):
    assert snap_compare(filled_app(), press=["4"])


def test_daemon_unreachable(snap_compare):
    app = filled_app()
    app.state.connected, app.state.error = False, "connection refused"
    assert snap_compare(app)
