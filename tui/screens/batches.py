"""Batches (OpenAI's Batch API): status, progress and request counts, read every few seconds;
``c`` cancels the selected batch, ``enter`` opens the job that runs it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer

from .. import format as fmt
from ..widgets import StatusBar
from .base import LoomScreen, selected_key, sync_table

#: How often the list is read from the daemon while the screen is shown.
POLL_S = 2.0
ENDED = ("completed", "failed", "expired", "cancelled")


def batch_cells(b: dict[str, Any]) -> tuple[Any, ...]:
    counts = b.get("request_counts") or {}
    total, done, failed = counts.get("total", 0), counts.get("completed", 0), counts.get("failed", 0)
    percent = 100.0 * (done + failed) / total if total else 0.0
    return (
        Text(b["id"], style="bold"),
        b.get("endpoint", ""),
        fmt.state(b.get("status", "")),
        fmt.bar(percent, width=6),
        f"{done}/{total}" + (f" ({failed} failed)" if failed else ""),
        fmt.clock(b.get("created_at")),
    )


class BatchesScreen(LoomScreen):
    BINDINGS = [Binding("c", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield StatusBar()
        table: DataTable[Any] = DataTable(id="batches", cursor_type="row", classes="box")
        table.border_title = "Batches"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#batches", DataTable)
        table.add_columns("ID", "Endpoint", "Status", "Progress", "Requests", "Created")
        table.focus()
        super().on_mount()
        if self.loom.live:
            self.refresh_batches()
            self.set_interval(POLL_S, self.refresh_batches)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.loom.live:
            self.refresh_batches()

    @work(exclusive=True, group="batches", exit_on_error=False)
    async def refresh_batches(self) -> None:
        if not self.is_current:
            return
        page = await self.loom.client.batches(limit=100)
        self.batches = page.get("data", [])
        self.redraw()

    def redraw(self) -> None:
        table = self.query_one("#batches", DataTable)
        sync_table(table, [(b["id"], batch_cells(b)) for b in self.batches])
        running = sum(1 for b in self.batches if b.get("status") not in ENDED)
        table.border_subtitle = f"{len(self.batches)} · {running} running"

    @property
    def selected(self) -> str | None:
        return selected_key(self.query_one("#batches", DataTable))

    def action_cancel(self) -> None:
        if self.selected:
            self.loom.perform(f"cancel {self.selected}", self.loom.client.cancel_batch, self.selected)
