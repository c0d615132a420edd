"""What every Loom screen shares: it redraws from the app's state when a signal says it changed,
and only while it is the screen on show (a hidden one catches up when it is shown again)."""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable

if TYPE_CHECKING:
    from ..app import LoomApp


#: A screen redraws at most this often: a busy daemon sends hundreds of events a second, and
#: drawing each one would cost more than it shows.
REDRAW_INTERVAL_S = 1.0


class LoomScreen(Screen):
    #: The app signals that make this screen redraw.
    WATCH: tuple[str, ...] = ()

    _stale = False
    _drawn_at = 0.0
    _redraw_timer: Timer | None = None

    @property
    def loom(self) -> LoomApp:
        return cast("LoomApp", self.app)

    def on_mount(self) -> None:
        for name in self.WATCH:
            getattr(self.loom.signals, name).subscribe(self, self._changed)
        self.redraw()

    def _changed(self, _: object = None) -> None:
        if not self.is_current:
            self._stale = True
        elif self._redraw_timer is None:
            wait = self._drawn_at + REDRAW_INTERVAL_S - monotonic()
            if wait <= 0:
                self._redraw_now()
            else:
                self._redraw_timer = self.set_timer(wait, self._redraw_now)

    def _redraw_now(self) -> None:
        self._redraw_timer = None
        self._drawn_at = monotonic()
        self.redraw()

    def on_screen_resume(self) -> None:
        if self._stale:
            self._stale = False
            self.redraw()

    def redraw(self) -> None:
        """Draw the screen from ``self.loom.state``."""


def sync_table(table: DataTable, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Make ``table`` show ``rows`` (key, cells): cells are updated in place when the keys are the
    same as before, so the cursor and scroll position survive a live update."""
    keys = [key for key, _ in rows]
    current = [row.key.value for row in table.ordered_rows]
    if keys != current:
        selected = current[table.cursor_row] if 0 <= table.cursor_row < len(current) else None
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if selected in keys:
            table.move_cursor(row=keys.index(selected), animate=False)
        return
    columns = [c.key for c in table.ordered_columns]
    for key, cells in rows:
        old = table.get_row(key)
        for column, old_value, value in zip(columns, old, cells):
            if _plain(old_value) != _plain(value) or type(old_value) is not type(value):
                table.update_cell(key, column, value)


def _plain(value: Any) -> Any:
    return (value.plain, str(value.style), [str(s) for s in value.spans]) if isinstance(value, Text) else value


def selected_key(table: DataTable) -> str | None:
    if not table.row_count or table.cursor_row < 0:
        return None
    return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
