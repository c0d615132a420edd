"""The dashboard: devices and their memory, resident models, queues, running work, throughput."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from .. import format as fmt
from ..widgets import NodeLine, StatusBar, ThroughputPanel, VramBar
from .base import LoomScreen, selected_key, sync_table


class DashboardScreen(LoomScreen):
    WATCH = ("scheduler", "jobs", "tick", "throughput")
    BINDINGS = [("enter", "open", "Open job")]

    def compose(self) -> ComposeResult:
        yield StatusBar()
        devices = Vertical(id="devices", classes="box")
        devices.border_title = "Devices"
        yield devices
        resident: DataTable[Any] = DataTable(id="resident", classes="box", cursor_type="row", zebra_stripes=False)
        resident.border_title = "Resident models"
        yield resident
        with Horizontal(id="dash-middle"):
            queues = Static(id="queues", classes="box")
            queues.border_title = "Queues"
            yield queues
            throughput = ThroughputPanel(id="throughput", classes="box")
            throughput.border_title = "Throughput"
            yield throughput
        running: DataTable[Any] = DataTable(id="running", classes="box", cursor_type="row")
        running.border_title = "Running"
        yield running
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#resident", DataTable).add_columns("Model", "Device", "Size", "Last use", "Pin", "Keep-alive")
        self.query_one("#running", DataTable).add_columns("Work", "Model / stage", "Progress", "Time")
        super().on_mount()

    def redraw(self) -> None:
        state = self.loom.state
        snapshot = state.scheduler or {"devices": []}
        self._draw_devices(snapshot["devices"], snapshot.get("nodes"))
        self._draw_resident()
        self._draw_queues(snapshot["devices"])
        self._draw_running(snapshot["devices"])
        self.query_one(ThroughputPanel).show(state.throughput)

    def _draw_devices(self, devices: list[dict], nodes: list[dict] | None = None) -> None:
        """A bar per device; on a cluster, the daemon's own devices first, then each node's line
        with its devices under it."""
        box = self.query_one("#devices", Vertical)
        rows: list[tuple[str, dict]] = [(f"device {d['name']}", d) for d in devices if not d.get("node")]
        for node in nodes or []:
            rows.append((f"node {node['name']}", node))
            rows += [(f"device {d['name']}", d) for d in devices if d.get("node") == node["name"]]
        shown = [w for w in box.children if isinstance(w, (NodeLine, VramBar))]
        if [w.row_key for w in shown] == [key for key, _ in rows]:
            for widget, (_, data) in zip(shown, rows, strict=True):
                widget.show(data)
        else:  # something joined or left: draw them again, in order
            for widget in shown:
                widget.remove()
            for key, data in rows:
                line = NodeLine(data, classes="node") if key.startswith("node ") else VramBar(data, classes="vram")
                line.row_key = key
                box.mount(line)
        if not devices:
            # A refused key is said in full here (the status line has no room for it).
            text = self.loom.state.refused or "waiting for the daemon…"
            placeholder = box.query(".placeholder")
            if not placeholder:
                box.mount(Static(text, classes="placeholder"))
            else:
                placeholder.first(Static).update(text)
        else:
            box.query(".placeholder").remove()

    def _draw_resident(self) -> None:
        state = self.loom.state
        rows = []
        for device, r in state.resident():
            left = state.keep_alive_left(r)
            if r.get("pinned"):
                keep = Text("pinned", style="bold")
            elif r.get("running") or r.get("queued"):
                keep = Text("busy", style="cyan")
            elif r.get("keep_alive") is None:
                keep = Text("forever", style="dim")
            else:
                keep = Text(fmt.duration(left), style="yellow" if (left or 0) < 30 else "")
            # Ages from the daemon's idle time, not its wall clock (which may not match ours).
            idle = (r.get("idle_seconds") or 0.0) + (fmt.now() - state.scheduler_at)
            last_use = "now" if r.get("running") else f"{fmt.duration(idle)} ago"
            rows.append(
                (
                    f"{device}/{r['model']}",
                    (
                        Text(r["model"], style=fmt.colour(r["model"])),
                        device,
                        fmt.size(r.get("footprint")),
                        last_use,
                        "yes" if r.get("pinned") else "",
                        keep,
                    ),
                )
            )
        sync_table(self.query_one("#resident", DataTable), rows)

    #: Queued items listed one by one under the counts, per device.
    NEXT_IN_LINE = 5

    def _draw_queues(self, devices: list[dict]) -> None:
        text = Text()
        for d in devices:
            for model, by_priority in sorted((d.get("queue") or {}).get("by_model", {}).items()):
                if text:
                    text.append("\n")
                text.append(f"{model[:13]:<14}", style=fmt.colour(model))
                text.append(" ".join(f"{n}×{p[:5]}" for p, n in sorted(by_priority.items())))
            # The next in line, each with its place and the daemon's estimate of its wait.
            for item in (d.get("queued") or [])[: self.NEXT_IN_LINE]:
                text.append(f"\n#{item.get('position', '?')} ", style="bold")
                text.append(f"{item['model'][:13]:<14}", style=fmt.colour(item["model"]))
                eta = item.get("estimated_wait")
                text.append(f"{item.get('priority', '')[:5]} ~{fmt.duration(eta)}", style="dim")
        depth = sum((d.get("queue") or {}).get("depth", 0) for d in devices)
        self.query_one("#queues", Static).update(text or Text("empty", style="dim"))
        self.query_one("#queues", Static).border_subtitle = f"{depth} waiting"

    def _draw_running(self, devices: list[dict]) -> None:
        rows: list[tuple[str, tuple[Any, ...]]] = []
        for job in self.loom.state.active_jobs():
            stage = job.get("stage") or job.get("state", "")
            elapsed = fmt.now() - job["started_at"] if job.get("started_at") else None
            rows.append(
                (
                    f"job:{job['id']}",
                    (
                        Text(f"job {job['id']}", style="bold"),
                        f"{job.get('pipeline')}: {stage}"[:28],
                        fmt.bar(job.get("progress")) if job.get("state") == "running" else fmt.state(job["state"]),
                        fmt.duration(elapsed),
                    ),
                )
            )
        for d in devices:
            for item in d.get("running") or []:
                rows.append(
                    (
                        f"work:{item['id']}",
                        (
                            item["id"],
                            Text(item["model"], style=fmt.colour(item["model"])),
                            Text(f"{item.get('kind', '')} ({item.get('priority', '')})", style="dim"),
                            fmt.duration(item.get("running_for")),
                        ),
                    )
                )
        table = self.query_one("#running", DataTable)
        sync_table(table, rows)
        table.border_subtitle = f"{len(rows)}"

    @on(DataTable.RowSelected, "#running")
    def _row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        key = selected_key(self.query_one("#running", DataTable))
        if key and key.startswith("job:"):
            self.loom.open_job(key.removeprefix("job:"))
