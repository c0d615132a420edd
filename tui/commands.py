"""The command palette (ctrl+p): go to a screen, open a job or its lineage, load/unload/pin a model,
cancel a job, check provider health."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from .app import LoomApp


class LoomCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        app = cast("LoomApp", self.app)
        for mode, title in (
            ("dashboard", "Dashboard"),
            ("jobs", "Jobs"),
            ("models", "Models & providers"),
            ("log", "Log"),
            ("batches", "Batches"),
        ):
            yield f"Go to {title}", partial(app.switch_mode, mode), f"show the {title.lower()} screen"
        for job in app.state.job_list()[:30]:
            jid, what = job["id"], f"{job.get('pipeline')} ({job.get('state')})"
            yield f"Open job {jid}", partial(app.open_job, jid), what
            yield f"Lineage of job {jid}", partial(app.open_lineage, jid), what
            if job.get("state") in ("queued", "running"):
                yield f"Cancel job {jid}", partial(app.cancel_job, jid), what
        for model in app.state.models:
            mid, client = model["id"], app.client
            yield f"Load model {mid}", partial(app.perform, f"load {mid}", client.load_model, mid), "make it resident"
            yield f"Unload model {mid}", partial(app.perform, f"unload {mid}", client.unload_model, mid), "free it"
            yield f"Pin model {mid}", partial(app.perform, f"pin {mid}", client.pin_model, mid, True), "never evict it"
            yield f"Unpin model {mid}", partial(app.perform, f"unpin {mid}", client.pin_model, mid, False), "let it go"
        yield (
            "Check provider health",
            partial(app.perform, "health check", app.client.check_providers, then=app.set_providers),
            "ask every upstream now",
        )
        yield "Reconnect", app.reconnect, "drop the connection to the daemon and connect again"

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            if title.startswith(("Go to", "Check", "Reconnect")):
                yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
