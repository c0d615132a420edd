"""Models and providers: load, unload and pin models; upstream health; switch who serves a model."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, OptionList
from textual.widgets.option_list import Option

from .. import format as fmt
from ..widgets import StatusBar
from .base import LoomScreen, selected_key, sync_table

UNDO = "\x00undo"
SHORT = {"completion": "compl", "embedding": "embed", "translation": "transl", "vision": "vis"}


class SwitchProviderScreen(ModalScreen[str | None]):
    """Pick the model that serves ``model`` from now on; dismisses with its id, UNDO, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, model: str, targets: list[str], switched_to: str | None) -> None:
        super().__init__()
        self.model, self.targets, self.switched_to = model, targets, switched_to

    def compose(self) -> ComposeResult:
        with Vertical(id="switch-dialog", classes="box"):
            yield Label(f"Serve [b]{self.model}[/b]'s requests with:")
            options = [Option(t, id=t) for t in self.targets]
            if self.switched_to:
                options.insert(0, Option(f"↺ {self.model} itself (undo the switch)", id=UNDO))
            if not options:
                options = [Option("no other model can do what it does", id="none", disabled=True)]
            yield OptionList(*options, id="switch-options")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class ModelsScreen(LoomScreen):
    WATCH = ("scheduler", "providers")
    BINDINGS = [
        Binding("l", "load", "Load"),
        Binding("u", "unload", "Unload"),
        Binding("p", "pin", "Pin"),
        Binding("s", "switch", "Switch"),
        Binding("h", "check", "Check"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusBar()
        models: DataTable[Any] = DataTable(id="models", cursor_type="row", classes="box")
        models.border_title = "Models"
        yield models
        upstreams: DataTable[Any] = DataTable(id="upstreams", cursor_type="row", classes="box")
        upstreams.border_title = "Upstreams"
        yield upstreams
        yield Footer()

    def on_mount(self) -> None:
        models = self.query_one("#models", DataTable)
        models.add_columns("Model", "Provider", "Can", "Where", "Size", "Pin", "Served by")
        self.query_one("#upstreams", DataTable).add_columns("Upstream", "Status", "Latency", "Checked", "Detail")
        models.focus()
        super().on_mount()

    def _provider_rows(self) -> dict[str, dict[str, Any]]:
        providers = self.loom.state.providers or {}
        return {m["id"]: m for m in providers.get("models", [])}

    def redraw(self) -> None:
        state = self.loom.state
        resident = {r["model"]: (device, r) for device, r in state.resident()}
        pinned = set((state.scheduler or {}).get("pinned", []))
        served = self._provider_rows()
        rows = []
        for m in state.models:
            mid = m["id"]
            p = served.get(mid, {})
            if mid in resident:
                device, r = resident[mid]
                where = Text(f"● {device}", style="green" if not r.get("evicting") else "yellow")
                size = fmt.size(r.get("footprint"))
            else:
                where, size = Text("remote" if p.get("remote") else "–", style="dim"), ""
            by = ", ".join(sorted(set((p.get("served_by") or {}).values()) - {mid}))
            serve = Text(f"→ {by}", style="bold yellow") if by else Text("itself", style="dim")
            if p and not p.get("healthy", True):
                serve = Text("unhealthy", style="bold red") + (Text(f" → {by}") if by else Text(""))
            caps = ",".join(SHORT.get(c, c) for c in m.get("capabilities", []))
            rows.append(
                (
                    mid,
                    (
                        Text(mid, style=fmt.colour(mid)),
                        m.get("provider", ""),
                        caps[:14],
                        where,
                        size,
                        "yes" if mid in pinned else "",
                        serve,
                    ),
                )
            )
        sync_table(self.query_one("#models", DataTable), rows)
        upstreams = []
        for u in (state.providers or {}).get("upstreams", []):
            healthy = u.get("healthy")
            status = Text(u.get("status") or ("ok" if healthy else "down"), style="green" if healthy else "bold red")
            latency = f"{u['latency_ms']:.0f} ms" if isinstance(u.get("latency_ms"), (int, float)) else "–"
            detail = u.get("error") or ", ".join(x["id"] for x in u.get("models", []))
            upstreams.append(
                (u["upstream"], (u["upstream"], status, latency, (u.get("checked_at") or "–")[11:19], detail))
            )
        table = self.query_one("#upstreams", DataTable)
        sync_table(table, upstreams)
        table.border_subtitle = "none configured" if not upstreams else f"{len(upstreams)}"

    @property
    def selected(self) -> str | None:
        return selected_key(self.query_one("#models", DataTable))

    def action_load(self) -> None:
        if self.selected:
            self.loom.perform(f"load {self.selected}", self.loom.client.load_model, self.selected)

    def action_unload(self) -> None:
        if self.selected:
            self.loom.perform(f"unload {self.selected}", self.loom.client.unload_model, self.selected)

    def action_pin(self) -> None:
        if self.selected:
            pinned = self.selected in set((self.loom.state.scheduler or {}).get("pinned", []))
            verb = "unpin" if pinned else "pin"
            self.loom.perform(f"{verb} {self.selected}", self.loom.client.pin_model, self.selected, not pinned)

    def action_check(self) -> None:
        self.loom.perform("health check", self.loom.client.check_providers, then=self.loom.set_providers)

    def action_switch(self) -> None:
        model = self.selected
        if not model:
            return
        caps = {m["id"]: set(m.get("capabilities", [])) for m in self.loom.state.models}
        targets = [mid for mid, c in caps.items() if mid != model and c & caps.get(model, set())]
        switched = self._provider_rows().get(model, {}).get("switched_to")

        def chosen(to: str | None) -> None:
            if to is None:
                return
            target = None if to == UNDO else to
            what = f"switch {model} → {target or 'itself'}"
            refresh = lambda _: self.loom.refresh_providers()  # noqa: E731
            self.loom.perform(what, self.loom.client.switch_provider, model, target, then=refresh)

        self.app.push_screen(SwitchProviderScreen(model, targets, switched), chosen)
