"""One job: its state, progress, events as they happen, the latest preview of the image it is
making, and its result; cancel, resume, lineage."""

from __future__ import annotations

import io
from typing import Any

from loom.sdk.client import describe_error
from PIL import Image
from rich.json import JSON
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, ProgressBar, RichLog, Static

from .. import format as fmt
from ..state import FINAL, describe_job_event
from ..widgets import ImageView, StatusBar
from .base import LoomScreen


class JobDetailScreen(LoomScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("n", "lineage", "Lineage"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: dict[str, Any] = {"id": job_id, "state": "…"}

    def compose(self) -> ComposeResult:
        yield StatusBar(f"Job {self.job_id}")
        yield Static(id="job-summary")
        yield ProgressBar(total=100, show_eta=False, id="job-progress")
        preview = ImageView(id="job-preview", classes="box")
        preview.border_title = "Preview"
        preview.display = False  # until the job sends one
        yield preview
        events = RichLog(id="job-events", classes="box", max_lines=1000, wrap=False)
        events.border_title = "Events"
        yield events
        result = VerticalScroll(Static(id="job-result"), id="job-result-box", classes="box")
        result.border_title = "Result"
        yield result
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.follow()

    @work(exclusive=True, group="job-detail", exit_on_error=False)
    async def follow(self) -> None:
        """Load the job, then replay and follow its events (reconnecting by itself)."""
        client = self.loom.client
        try:
            self.job = await client.job(self.job_id)
        except Exception as e:  # shown on screen; the event stream below retries on its own
            why = f"cannot load job {self.job_id}: {describe_error(e)}"
            self.query_one("#job-summary", Static).update(Text(why, style="bold red"))
        self.redraw()
        log = self.query_one("#job-events", RichLog)
        log.clear()  # following again after a resume replays the job's events from the start
        async for event in client.job_events(self.job_id):
            ev = event.data
            log.write(
                Text.assemble(
                    (fmt.clock(ev.get("created_at")), "dim"),
                    f" {ev.get('type', ''):<9} ",
                    describe_job_event(ev).removeprefix(f"job {self.job_id} "),
                )
            )
            self.loom.state.apply_job_event(ev)
            data = ev.get("data") or {}
            if ev.get("type") == "state":
                self.job["state"] = data.get("state", self.job.get("state"))
                if data.get("state") in FINAL:
                    try:
                        self.job = await client.job(self.job_id)
                    except Exception:
                        pass
            elif ev.get("type") == "progress":
                self.job.update(progress=data.get("progress"), stage=data.get("stage"), message=data.get("message"))
            elif ev.get("type") == "preview" and data.get("path"):
                self.show_preview(data)
            self.redraw()

    @work(exclusive=True, group="job-preview", exit_on_error=False)
    async def show_preview(self, data: dict[str, Any]) -> None:
        """Fetch a preview's thumbnail and show it while the job runs (the latest wins)."""
        raw = await self.loom.client.file(data["path"])
        image = Image.open(io.BytesIO(raw))
        image.load()
        view = self.query_one("#job-preview", ImageView)
        view.border_subtitle = f"{data.get('model', '')} · {data.get('index', 0) + 1}/{data.get('of', '?')}"
        view.set_image(image)
        view.display = self.job.get("state") not in FINAL

    def redraw(self) -> None:
        j = self.job
        lines = Text.assemble(
            (j.get("pipeline") or "", "bold"),
            " · ",
            fmt.state(j.get("state", "")),
            f" · attempt {j.get('attempts', 0)} · created {fmt.clock(j.get('created_at'))}",
        )
        timings = j.get("timings") or {}
        if timings:
            lines.append(f" · {fmt.duration(timings.get('elapsed_seconds'))}")
        lines.append(f"\nstage: {j.get('stage') or '–'}")
        if j.get("message"):
            lines.append(f" · {j['message']}", style="dim")
        usage = j.get("usage") or {}
        if usage or timings:
            lines.append(f"\n{usage.get('total_tokens', 0)} tokens · {timings.get('steps', 0)} steps", style="dim")
            lines.append(f" · {len(j.get('artifacts') or [])} files", style="dim")
        if j.get("state") in FINAL:
            self.query_one("#job-preview", ImageView).display = False
        if j.get("error"):
            err = j["error"]
            lines.append(f"\nerror: {err.get('message', err) if isinstance(err, dict) else err}", style="bold red")
        self.query_one("#job-summary", Static).update(lines)
        self.query_one("#job-progress", ProgressBar).update(progress=j.get("progress") or 0.0)
        result = j.get("result")
        box = self.query_one("#job-result", Static)
        box.update(JSON.from_data(result) if result is not None else Text("no result yet", style="dim"))

    def action_cancel(self) -> None:
        self.loom.cancel_job(self.job_id)

    def action_resume(self) -> None:
        self.loom.resume_job(self.job_id, then=lambda job: self.follow())

    def action_lineage(self) -> None:
        self.loom.open_lineage(self.job_id)
