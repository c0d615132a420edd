"""A beam search's lineage, iteration by iteration, live while the job runs: each candidate's
scores, WHAT and HOW prompts and critiques, the judge's verdicts and reasons (pairwise ranking),
the kept ones, the failed ones with their error, the winner, and its image."""

from __future__ import annotations

import io
from typing import Any

from loom.sdk.client import describe_error
from PIL import Image
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Static

from ..state import FINAL
from ..widgets import ImageView, LineageTree, StatusBar
from .base import LoomScreen


def candidate_text(n: dict[str, Any]) -> Text:
    """The details of one candidate, as the panel beside the tree shows them."""
    t = Text()
    t.append(str(n["id"]), style="bold")
    if n.get("winner"):
        t.append("  ★ winner", style="bold yellow")
    if n.get("rank") is not None:
        ranked_in = n.get("ranked_in", n.get("iteration"))
        t.append(f"  #{n['rank']} in iteration {ranked_in}'s ranking")
    if n.get("kept_in"):
        t.append(f"  kept in {', '.join(map(str, n['kept_in']))}", style="green")
    t.append(f"\niteration {n.get('iteration')} · {n.get('status', '')}")
    if n.get("global_rank") is not None:
        t.append(f" · #{n['global_rank']} of all")
    if n.get("parent"):
        t.append(f" · from {n['parent']}")
        if n.get("dimension"):
            t.append(f" (rewrote {str(n['dimension']).upper()})")
    if isinstance(n.get("score"), (int, float)):
        t.append(f"\nscore {n['score']:.2f}", style="bold cyan")
        if isinstance(n.get("clip"), (int, float)):
            t.append(f" = clip {n['clip']:.3f}")
        if isinstance(n.get("aesthetic"), (int, float)):
            t.append(f" · aesthetic {n['aesthetic']:.2f}")
    for name in ("what", "how"):
        if n.get(name):
            t.append(f"\n{name.upper():<5}", style="bold magenta")
            t.append(str(n[name]))
    error = n.get("error")
    if n.get("status") == "failed" and isinstance(error, dict):
        t.append(f"\nFailed at {error.get('stage', '?')}: ", style="bold red")
        t.append(str(error.get("message", "")), style="red")
    for dim, critique in _critiques(n.get("critique")):
        t.append(f"\nCritique{f' ({dim.upper()})' if dim else ''} ", style="bold")
        t.append(str(critique.get("critique", "")))
        if critique.get("recommendation"):
            t.append(f"\n  → {critique['recommendation']}", style="italic")
            if critique.get("reason"):
                t.append(f" ({critique['reason']})", style="dim")
    if n.get("description"):
        t.append("\nSeen as ", style="bold")
        t.append(str(n["description"]), style="dim")
    comparisons = n.get("comparisons") or []
    if comparisons:
        t.append("\nComparisons", style="bold")
        for c in comparisons:
            won = c.get("result") == "win"
            t.append(f"\n  {'won' if won else 'lost'} vs {c.get('opponent')}", style="green" if won else "grey50")
            t.append(f" (it {c.get('iteration')}, {'judge' if c.get('decided_by') == 'judge' else 'by scores'})")
            if c.get("reason"):
                t.append(f": {c['reason']}", style="dim")
    return t


def _critiques(critique: Any) -> list[tuple[str | None, dict]]:
    """(dimension, critique) pairs: by dimension, or one critique without one."""
    if not isinstance(critique, dict):
        return []
    if "critique" in critique:
        return [(None, critique)]
    return [(dim, c) for dim, c in critique.items() if isinstance(c, dict)]


class LineageScreen(LoomScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("t", "toggle_view", "By descent"),
        Binding("w", "winner", "Winner"),
        Binding("o", "job", "Job"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.nodes: dict[str, dict[str, Any]] = {}
        self.state_text = "…"
        self.selected: dict[str, Any] | None = None
        self._images: dict[str, Image.Image] = {}
        self._pending = False

    def compose(self) -> ComposeResult:
        yield StatusBar(f"Lineage {self.job_id}")
        with Horizontal(id="lineage-body"):
            tree = LineageTree(id="lineage-tree", classes="box")
            tree.border_title = "Candidates"
            yield tree
            pane = VerticalScroll(
                Static("select a candidate", id="candidate"),
                ImageView(id="candidate-image"),
                id="candidate-pane",
                classes="box",
            )
            pane.border_title = "Candidate"
            yield pane
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.follow()

    @work(exclusive=True, group="lineage", exit_on_error=False)
    async def follow(self) -> None:
        """The lineage so far, then its lineage events until the job ends (lineage events merge
        into their node by id, so replaying one twice does no harm)."""
        client = self.loom.client
        try:
            job = await client.job(self.job_id)
            lineage = await client.lineage(self.job_id)
        except Exception as e:
            why = f"cannot load the lineage of job {self.job_id}: {describe_error(e)}"
            self.query_one("#candidate", Static).update(Text(why, style="bold red"))
            return
        self.state_text = lineage.get("state", job.get("state", ""))
        self.nodes = {str(n["id"]): n for n in lineage.get("nodes", [])}
        self.redraw()
        self.action_winner()
        if job.get("state") in FINAL:
            return
        async for event in client.job_events(self.job_id, after=job.get("last_event_id", 0)):
            ev = event.data
            data = ev.get("data") or {}
            if ev.get("type") == "lineage" and "id" in data:
                key = str(data["id"])
                self.nodes[key] = {**self.nodes.get(key, {}), **data}
            elif ev.get("type") == "state":
                self.state_text = data.get("state", self.state_text)
            else:
                continue
            if not self._pending:  # coalesce bursts of events into one redraw
                self._pending = True
                self.set_timer(0.2, self._flush_redraw)

    def _flush_redraw(self) -> None:
        self._pending = False
        self.redraw()

    def redraw(self) -> None:
        tree = self.query_one(LineageTree)
        tree.show(self.nodes)
        iterations = {n.get("iteration") for n in self.nodes.values()}
        tree.border_subtitle = f"{self.state_text} · {len(iterations)} it · {len(self.nodes)} cand"
        if tree.cursor_node is None or tree.cursor_node.data is None:
            tree.select_id(next(iter(sorted(self.nodes)), None))
        if self.selected is not None and self.selected.get("id") in self.nodes:
            self._show_candidate(self.nodes[self.selected["id"]])

    @on(LineageTree.CandidateSelected)
    def _selected(self, message: LineageTree.CandidateSelected) -> None:
        self._show_candidate(message.node)

    def _show_candidate(self, node: dict[str, Any]) -> None:
        previous, self.selected = self.selected, node
        self.query_one("#candidate", Static).update(candidate_text(node))
        image = node.get("image")
        if not image:
            self.query_one(ImageView).set_image(None)
        elif image in self._images:
            self.query_one(ImageView).set_image(self._images[image])
        elif previous is None or previous.get("image") != image:
            self.load_image(image)

    @work(exclusive=True, group="lineage-image", exit_on_error=False)
    async def load_image(self, path: str) -> None:
        data = await self.loom.client.file(path)
        image = Image.open(io.BytesIO(data))
        image.load()
        self._images[path] = image
        if self.selected and self.selected.get("image") == path:
            self.query_one(ImageView).set_image(image)

    def action_toggle_view(self) -> None:
        tree = self.query_one(LineageTree)
        tree.by_descent = not tree.by_descent

    def action_winner(self) -> None:
        winner = next((k for k, n in self.nodes.items() if n.get("winner")), None)
        self.query_one(LineageTree).select_id(winner)

    def action_job(self) -> None:
        self.loom.open_job(self.job_id)
