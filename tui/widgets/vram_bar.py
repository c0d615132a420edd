"""A device's memory as a bar: one coloured segment per resident model, then reserved and free."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from .. import format as fmt

LABEL = 8


class VramBar(Widget):
    """Budget, used and a segment per resident model, with a legend line under the bar."""

    def __init__(self, device: dict[str, Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.device = device
        #: The dashboard's key for this bar ("device NAME"), to redraw bars in place.
        self.row_key = ""
        #: A cluster node's device is labelled without its node (the node's line is above it).
        self.label = " " + device["name"].rpartition("/")[2] if device.get("node") else device["name"]

    def show(self, device: dict[str, Any]) -> None:
        self.device = device
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 2 if self.device.get("budget") else 1

    def render(self) -> Text:
        d = self.device
        name = Text(f"{self.label[: LABEL - 1]:<{LABEL}}", style="bold")
        resident = d.get("resident") or []
        budget = d.get("budget")
        if not d.get("available", True):
            return name + Text(f"unavailable: {d.get('reason') or 'unknown'}", style="red")
        if not budget:
            names = ", ".join(r["model"] for r in resident) or "none"
            return name + Text(f"no memory budget · resident: {names}", style="dim")
        numbers = f" {fmt.size(d.get('used'))}/{fmt.size(budget)}"
        width = max(10, self.content_size.width - LABEL - len(numbers))
        line = name + self._bar(d, resident, budget, width) + Text(numbers)
        return line + Text("\n") + self._legend(d, resident)

    @staticmethod
    def _bar(d: dict, resident: list[dict], budget: int, width: int) -> Text:
        bar, cum, pos = Text(), 0, 0
        for r in resident:
            cum += r.get("footprint") or 0
            end = min(width, round(cum / budget * width))
            cells = end - pos
            if cells <= 0:
                continue
            label = r["model"][:cells].center(cells) if cells >= 3 else " " * cells
            style = f"black on {fmt.colour(r['model'])}" + (" strike" if r.get("evicting") else "")
            bar.append(label, style=style)
            pos = end
        reserved = d.get("reserved") or 0
        if reserved:
            end = min(width, round((cum + reserved) / budget * width))
            bar.append("▒" * max(0, end - pos), style="grey50")
            pos = max(pos, end)
        bar.append("░" * (width - pos), style="grey30")
        return bar

    @staticmethod
    def _legend(d: dict, resident: list[dict]) -> Text:
        legend = Text(" " * LABEL, no_wrap=True, overflow="ellipsis")
        for r in resident:
            legend.append("■ ", style=fmt.colour(r["model"]))
            pin = " (pinned)" if r.get("pinned") else ""
            legend.append(f"{r['model']}{pin} {fmt.size(r.get('footprint'))}  ")
        if d.get("loading"):
            legend.append(f"loading {d['loading']}…  ", style="yellow")
        legend.append(f"free {fmt.size(d.get('free'))}", style="dim")
        return legend
