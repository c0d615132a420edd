"""The jobs list: live state and progress, a filter, and cancel / resume / detail / lineage."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input

from .. import format as fmt
from ..widgets import StatusBar
from .base import LoomScreen, selected_key, sync_table


def job_matches(job: dict, words: list[str]) -> bool:
    hay = f"{job['id']} {job.get('pipeline', '')} {job.get('state', '')} {job.get('stage', '')}".lower()
    return all(w in hay for w in words)


class JobsScreen(LoomScreen):
    WATCH = ("jobs",)
    BINDINGS = [
        Binding("enter", "open", "Detail", show=False),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("n", "lineage", "Lineage"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Input(placeholder="filter: id, pipeline, state or stage  (/)", id="jobs-filter")
        table: DataTable[Any] = DataTable(id="jobs", cursor_type="row", classes="box")
        table.border_title = "Jobs"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#jobs", DataTable)
        table.add_columns("ID", "Pipeline", "State", "Progress", "Stage", "Created")
        table.focus()
        super().on_mount()

    def redraw(self) -> None:
        words = self.query_one("#jobs-filter", Input).value.lower().split()
        jobs = [j for j in self.loom.state.job_list() if job_matches(j, words)]
        rows = [
            (
                j["id"],
                (
                    Text(j["id"], style="bold"),
                    j.get("pipeline", ""),
                    fmt.state(j.get("state", "")),
                    fmt.bar(j.get("progress"), width=6),
                    (j.get("stage") or "")[:14],
                    fmt.clock(j.get("created_at")),
                ),
            )
            for j in jobs
        ]
        table = self.query_one("#jobs", DataTable)
        sync_table(table, rows)
        total = len(self.loom.state.jobs)
        table.border_subtitle = f"{len(rows)} of {total}" if words else f"{total}"

    @property
    def selected(self) -> str | None:
        return selected_key(self.query_one("#jobs", DataTable))

    @on(Input.Changed, "#jobs-filter")
    def _filter_changed(self) -> None:
        self.redraw()

    @on(Input.Submitted, "#jobs-filter")
    def _filter_done(self) -> None:
        self.query_one("#jobs", DataTable).focus()

    @on(DataTable.RowSelected, "#jobs")
    def _row_selected(self) -> None:
        self.action_open()

    def action_filter(self) -> None:
        self.query_one("#jobs-filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#jobs-filter", Input).value = ""
        self.query_one("#jobs", DataTable).focus()

    def action_open(self) -> None:
        if self.selected:
            self.loom.open_job(self.selected)

    def action_lineage(self) -> None:
        if self.selected:
            self.loom.open_lineage(self.selected)

    def action_cancel(self) -> None:
        if self.selected:
            self.loom.cancel_job(self.selected)

    def action_resume(self) -> None:
        if self.selected:
            self.loom.resume_job(self.selected)
