"""Behaviour on fixed data (a FakeClient): key bindings call the right SDK methods, the filter
filters, the command palette opens things, and the pieces the screens are drawn with."""

from __future__ import annotations

from loom.tui.screens import JobDetailScreen, JobsScreen, LineageScreen, LogScreen, ModelsScreen
from loom.tui.screens.models import SwitchProviderScreen
from loom.tui.state import DaemonState, Throughput, describe_scheduler_event, output_counters
from loom.tui.widgets import LineageTree
from loom.tui.widgets.image_view import half_blocks
from textual.widgets import DataTable, Input

from .conftest import until
from .fakes import JOB, NOW, filled_app, png


def rows(app, selector: str) -> list[str]:
    table = app.screen.query_one(selector, DataTable)
    return [row.key.value for row in table.ordered_rows]


async def test_jobs_filter_cancel_resume_and_open():
    app = filled_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert isinstance(app.screen, JobsScreen)
        assert rows(app, "#jobs") == [JOB, "0f0f0f0f0f0f", "dead00beef00"]  # newest first
        await pilot.press("slash", *"succ")
        assert rows(app, "#jobs") == ["0f0f0f0f0f0f"]
        await pilot.press("escape")
        assert app.screen.query_one("#jobs-filter", Input).value == "" and len(rows(app, "#jobs")) == 3
        assert app.screen.selected == "0f0f0f0f0f0f"  # the row chosen while filtered stays chosen
        await pilot.press("up", "c")
        await until(pilot, lambda: ("cancel_job", (JOB,)) in app.client.calls, what="cancel")
        await pilot.press("down", "down", "r")
        await until(pilot, lambda: ("resume_job", ("dead00beef00",)) in app.client.calls, what="resume")
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen) and app.screen.job_id == "dead00beef00"
        await pilot.press("n")
        assert isinstance(app.screen, LineageScreen)
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, JobsScreen)


async def test_models_load_unload_pin_and_switch():
    app = filled_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("down", "l", "u", "p")  # qwen-7b: not pinned, so p pins it
        await until(pilot, lambda: len(app.client.calls) == 3, what="three calls")
        assert app.client.calls == [
            ("load_model", ("qwen-7b",)),
            ("unload_model", ("qwen-7b",)),
            ("pin_model", ("qwen-7b", True)),
        ]
        await pilot.press("up", "p")  # sd-turbo is pinned: p unpins
        await until(pilot, lambda: ("pin_model", ("sd-turbo", False)) in app.client.calls, what="unpin")
        await pilot.press("down", "s")
        assert isinstance(app.screen, SwitchProviderScreen)
        await pilot.press("enter")  # the first option undoes qwen-7b's switch to gpt-remote
        await until(pilot, lambda: ("switch_provider", ("qwen-7b", None)) in app.client.calls, what="undo")
        await pilot.press("s", "down", "enter")
        await until(pilot, lambda: ("switch_provider", ("qwen-7b", "gpt-remote")) in app.client.calls, what="switch")


async def test_command_palette_opens_a_lineage():
    app = filled_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*f"lineage of job {JOB}")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LineageScreen), what="lineage screen")
        await app.workers.wait_for_complete()
        tree = app.screen.query_one(LineageTree)
        assert tree.selected_id == "i1c0"  # the winner is selected first
        await pilot.press("t")
        assert tree.by_descent and tree.selected_id == "i1c0"


async def test_lineage_shows_failed_candidates_and_the_judges_reasons():
    from loom.tui.screens.lineage import candidate_text

    app = filled_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_lineage(JOB)
        await until(
            pilot,
            lambda: isinstance(app.screen, LineageScreen) and app.screen.query(LineageTree),
            what="lineage screen",
        )
        tree = app.screen.query_one(LineageTree)
        await until(pilot, lambda: tree.selected_id == "i1c0", what="winner selected")
        labels = {n.data["id"]: str(n.label) for n in tree._by_id.values()}
        assert labels["i1c2"].startswith("✖ i1c2 failed at image")
        assert str(tree._iterations[1].label).endswith("✖1")

        def shown():
            return str(app.screen.query_one("#candidate").render())

        await until(pilot, lambda: "won vs i1c1 (it 1, judge): A fills the frame" in shown(), what="verdicts")
        tree.select_id("i1c2")
        await until(pilot, lambda: "Failed at image: the GPU ran out" in shown(), what="the failure")
    text = str(candidate_text({"id": "x", "critique": {"critique": "old", "recommendation": "r"}}))
    assert "Critique old" in text  # a critique without dimensions still shows


async def test_log_filter():
    app = filled_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        assert isinstance(app.screen, LogScreen)
        log = app.screen.query_one("#log")
        shown = lambda: " ".join(log.lines)  # noqa: E731
        assert "qwen-7b loaded" in shown() and "llava evicted" in shown()
        await pilot.press("slash", *"evicted")
        await pilot.pause()
        assert "llava evicted" in shown() and "qwen-7b loaded" not in shown()


def test_state_pieces():
    tp = Throughput(size=4)
    tp.sample(0.0, 100, 1)
    tp.sample(2.0, 160, 3)
    assert list(tp.tokens_per_s)[-1] == 30.0 and list(tp.images_per_min)[-1] == 60.0
    tp.sample(4.0, 0, 0)  # the daemon restarted: counters went back to zero
    assert list(tp.tokens_per_s)[-1] == 0.0
    assert output_counters('loom_tokens_total{model="a"} 5.0\nloom_tokens_total{model="b"} 2\n') == (7.0, 0.0)
    text = describe_scheduler_event(
        {"type": "evicted", "model": "m", "device": "cpu", "reason": "room for n", "footprint": 200 * 2**20}
    )
    assert text == "m evicted from cpu (room for n), freed 200 MiB"
    state = DaemonState()
    state.scheduler_at = NOW - 10
    assert state.keep_alive_left({"keep_alive": 300.0, "idle_seconds": 20.0}) == 270.0
    assert state.keep_alive_left({"keep_alive": None}) is None


def test_half_blocks_fit_and_centre():
    from io import BytesIO

    from PIL import Image

    strips = half_blocks(Image.open(BytesIO(png())), 20, 5)  # 32x32 into 20x5 cells: 10x10 pixels
    assert len(strips) == 5 and all(s.cell_length == 15 for s in strips)  # 5 cells of padding, 10 of image


async def test_the_dashboard_shows_each_node_above_its_devices():
    from loom.tui.widgets import NodeLine, VramBar

    from .fakes import CLUSTER

    app = filled_app(scheduler=CLUSTER)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()

        def order() -> list[str]:
            box = app.screen.query_one("#devices")
            return [w.row_key for w in box.children if isinstance(w, (NodeLine, VramBar))]

        assert order() == [
            "device cpu",
            "node gpu-a",
            "device gpu-a/cpu",
            "device gpu-a/cuda:0",
            "node gpu-b",
            "device gpu-b/cpu",
        ]
        line = str(app.screen.query(NodeLine).first().render())
        assert "gpu-a" in line and "10.0.0.11" in line and "1 GPU" in line and "nvlink 1" in line
        assert [b.label for b in app.screen.query(VramBar)][:3] == ["cpu", " cpu", " cuda:0"]
        # gpu-b leaves: its line and its devices go, the rest stay in order.
        app.state.scheduler = {
            **CLUSTER,
            "nodes": CLUSTER["nodes"][:1],
            "devices": [d for d in CLUSTER["devices"] if d.get("node") != "gpu-b"],
        }
        app.screen.redraw()
        await pilot.pause()
        assert order() == ["device cpu", "node gpu-a", "device gpu-a/cpu", "device gpu-a/cuda:0"]


async def test_a_refused_key_is_said_with_what_to_do(monkeypatch):
    """Not "cannot reach ... waiting for the daemon": the daemon answered and refused the key."""
    from loom.sdk.errors import AuthenticationFailed
    from loom.tui.app import LoomApp

    from .fakes import FakeClient

    class Refusing(FakeClient):
        async def events(self, path: str = "/admin/events", *, on_status=None, **kw):
            error = AuthenticationFailed("Invalid API key")
            error.status_code = 401
            raise error
            yield  # pragma: no cover

    monkeypatch.delenv("LOOM_API_KEY", raising=False)
    app = LoomApp(Refusing())
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.refused is not None, what="the refusal")
        await pilot.pause(1.2)
        status = app.screen.query_one("StatusBar")
        assert "refused the key" in status.text and "cannot reach" not in status.text
        placeholder = app.screen.query_one("#devices .placeholder")
        assert "LOOM_API_KEY=<an admin key> loom tui" in str(placeholder.render())


async def test_the_queue_box_lists_the_next_in_line_with_their_wait():
    from textual.widgets import Static

    from .fakes import SCHEDULER

    def queued(position: int, model: str, priority: str, eta: float | None) -> dict:
        return {
            "id": f"wk_{position:012x}",
            "model": model,
            "priority": priority,
            "position": position,
            "estimated_wait": eta,
        }

    device = {
        **SCHEDULER["devices"][0],
        "queued": [
            queued(1, "qwen-7b", "interactive", 0.0),
            queued(2, "sd-turbo", "pipeline", 4.5),
            queued(3, "sd-turbo", "pipeline", None),
        ],
    }
    app = filled_app(scheduler={**SCHEDULER, "devices": [device, *SCHEDULER["devices"][1:]]})
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#queues", Static).render())
        lines = [line for line in text.splitlines() if line.startswith("#")]
        assert [line.split()[:2] for line in lines] == [["#1", "qwen-7b"], ["#2", "sd-turbo"], ["#3", "sd-turbo"]]
        assert lines[0].endswith("~0.0s") and lines[1].endswith("~4.5s") and lines[2].endswith("~–")
