"""The top line of every screen: the screens (the current one marked), which daemon, and whether
it can be reached; when it cannot, that is what the line says."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from ..app import LoomApp

#: (key, mode, label) of the screens the number keys switch between.
NAV = (("1", "dashboard", "Dash"), ("2", "jobs", "Jobs"), ("3", "models", "Models"), ("4", "log", "Log"))


class StatusBar(Static):
    def __init__(self, title: str = "") -> None:
        """``title``: what a pushed screen shows (a job, a lineage); mode screens leave it empty."""
        super().__init__(classes="status-bar")
        self.title = title
        self.text = ""

    @property
    def loom(self) -> LoomApp:
        return cast("LoomApp", self.app)

    def on_mount(self) -> None:
        self.loom.signals.connection.subscribe(self, self._redraw)
        self._redraw()

    def _redraw(self, _: object = None) -> None:
        state = self.loom.state
        left = Text.assemble((" Loom ", "bold reverse"), " ")
        if not self.title and (state.connected or not state.error):
            current = getattr(self.app, "current_mode", None)
            for key, mode, label in NAV:
                selected = mode == current
                left.append(f"{key} {label}", style="bold reverse" if selected else "dim")
                left.append(" ")
        if self.title:
            left.append(f"› {self.title}", style="bold")
        if state.connected:
            right = Text.assemble(("● ", "green"), state.url)
            self.remove_class("-down")
        elif state.refused:
            right = Text(f"✖ {state.url} refused the key (see below) ", style="bold")
            self.add_class("-down")
        elif state.error:
            verb = "lost" if state.ever_connected else "cannot reach"
            right = Text(f"✖ {verb} {state.url}: {state.error} · retrying ", style="bold")
            self.add_class("-down")
        else:
            right = Text.assemble(("… ", "yellow"), f"connecting to {state.url}")
            self.remove_class("-down")
        grid = Table.grid(expand=True)
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True, overflow="ellipsis")
        grid.add_row(left, right)
        self.text = f"{left.plain} {right.plain}"  # what it says, in plain words (tests read it)
        self.update(grid)
