"""The live event stream (scheduler and job events), filterable by words."""

from __future__ import annotations

from rich.highlighter import Highlighter
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Log

from .. import format as fmt
from ..state import LogLine
from ..widgets import StatusBar
from .base import REDRAW_INTERVAL_S, LoomScreen

KIND_STYLE = {
    "loaded": "green",
    "evicted": "bold yellow",
    "unloaded": "yellow",
    "failed": "bold red",
    "cancelled": "magenta",
    "state": "cyan",
    "memory": "dim",
    "pinned": "bold",
}


def line_text(line: LogLine) -> str:
    return f"{fmt.clock(line.time)} {line.source[:5]:<5} {line.kind:<9} {line.text}"


class LineHighlighter(Highlighter):
    """Colours the fixed-width columns of :func:`line_text`: time and source dim, kind by kind."""

    def highlight(self, text: Text) -> None:
        text.stylize("dim", 0, 14)
        kind = text.plain[15:24].strip()
        if kind in KIND_STYLE:
            text.stylize(KIND_STYLE[kind], 15, 24)


class LogScreen(LoomScreen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear", show=False),
        Binding("c", "clear", "Clear log"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._batch: list[LogLine] = []

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Input(placeholder="filter: words that must all appear, e.g. evicted cpu  (/)", id="log-filter")
        # Log draws only the lines on screen, which matters at hundreds of events a second.
        log = Log(id="log", classes="box", max_lines=2000, highlight=True)
        log.highlighter = LineHighlighter()
        log.border_title = "Events"
        yield log
        yield Footer()

    def on_mount(self) -> None:
        self.loom.signals.log.subscribe(self, self._line)
        self.query_one("#log", Log).focus()
        super().on_mount()

    @property
    def words(self) -> list[str]:
        return self.query_one("#log-filter", Input).value.lower().split()

    def redraw(self) -> None:
        self._batch = []
        log = self.query_one("#log", Log)
        log.clear()
        words = self.words
        log.write_lines([line_text(line) for line in self.loom.state.log if line.matches(words)])

    def _line(self, line: LogLine) -> None:
        if not self.is_current:
            self._stale = True
            return
        # Lines are written in batches, a few times a second (see REDRAW_INTERVAL_S).
        if not self._batch:
            self.set_timer(REDRAW_INTERVAL_S / 2, self._write_batch)
        self._batch.append(line)

    def _write_batch(self) -> None:
        lines, self._batch = self._batch, []
        words = self.words
        self.query_one("#log", Log).write_lines([line_text(line) for line in lines if line.matches(words)])

    @on(Input.Changed, "#log-filter")
    def _filter_changed(self) -> None:
        self.redraw()

    @on(Input.Submitted, "#log-filter")
    def _filter_done(self) -> None:
        self.query_one("#log", Log).focus()

    def action_filter(self) -> None:
        self.query_one("#log-filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#log-filter", Input).value = ""
        self.query_one("#log", Log).focus()

    def action_clear(self) -> None:
        self.loom.state.log.clear()
        self.redraw()
