"""``loom tui``: a Textual app that watches and steers a Loom daemon over HTTP (through loom.sdk).

The app keeps what it knows in :class:`~loom.tui.state.DaemonState` and tells screens about
changes with signals. It is driven by the daemon's events: the scheduler's SSE stream (a
snapshot is re-read, debounced, when something happened), each active job's event stream, and
``/metrics`` only after work finished. Every stream reconnects by itself and the status line
says when the daemon cannot be reached. All I/O runs in workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from loom.sdk.client import AsyncLoomClient, describe_error
from loom.sdk.errors import LoomError
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal
from textual.timer import Timer

from . import format as fmt
from .commands import LoomCommands
from .screens import (
    BatchesScreen,
    DashboardScreen,
    JobDetailScreen,
    JobsScreen,
    LineageScreen,
    LogScreen,
    ModelsScreen,
)
from .state import FINAL, DaemonState, LogLine, describe_job_event, describe_scheduler_event, output_counters
from .widgets.status import NAV

#: How long to gather events before re-reading the scheduler snapshot / the job list.
SNAPSHOT_DEBOUNCE_S = 0.5
JOBS_DEBOUNCE_S = 1.0
THROUGHPUT_TICK_S = 2.0
SCREENS = Binding.Group("Screens", compact=True)


class Signals:
    """What screens subscribe to: each is published when that part of the state changed."""

    def __init__(self, app: App) -> None:
        self.connection: Signal[bool] = Signal(app, "connection")
        self.scheduler: Signal[object] = Signal(app, "scheduler")
        self.jobs: Signal[object] = Signal(app, "jobs")
        self.providers: Signal[object] = Signal(app, "providers")
        self.log: Signal[LogLine] = Signal(app, "log")
        self.throughput: Signal[object] = Signal(app, "throughput")
        self.tick: Signal[object] = Signal(app, "tick")


class LoomApp(App[None]):
    CSS_PATH = "loom.tcss"
    TITLE = "Loom"
    COMMANDS = App.COMMANDS | {LoomCommands}
    MODES = {
        "dashboard": DashboardScreen,
        "jobs": JobsScreen,
        "models": ModelsScreen,
        "log": LogScreen,
        "batches": BatchesScreen,
    }
    DEFAULT_MODE = "dashboard"
    # The number keys are one group in the footer; the status line names each screen.
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", label, group=SCREENS) for key, mode, label in NAV),
        # Batches are a screen of their own, not (yet) in the status line's numbered list.
        Binding("5", "switch_mode('batches')", "Batches", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, client: Any = None, *, url: str | None = None, api_key: str | None = None, live: bool = True
    ) -> None:
        """``client``: an AsyncLoomClient (or a stand-in with its methods, as tests use); by
        default one for ``url`` and ``api_key``. ``live=False`` draws what the state holds and
        starts no streams or timers (snapshot tests)."""
        super().__init__()
        self.client = client if client is not None else AsyncLoomClient(url, api_key, timeout=10.0)
        self.state = DaemonState(getattr(self.client, "url", url or ""))
        self.signals = Signals(self)
        self.live = live
        self._soon: dict[str, Timer] = {}
        self._following: set[str] = set()

    # --- life cycle ---

    def on_mount(self) -> None:
        if self.live:
            self.set_interval(1.0, lambda: self.signals.tick.publish(None))
            self.set_interval(THROUGHPUT_TICK_S, self._throughput_tick)
            self.follow_scheduler()

    async def on_unmount(self) -> None:
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()

    def reconnect(self) -> None:
        self.follow_scheduler()  # exclusive: the running stream is cancelled and a new one opens

    def _later(self, key: str, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` once after ``delay``, however often this is asked for meanwhile."""
        if key in self._soon:
            return

        def fire() -> None:
            self._soon.pop(key, None)
            callback()

        self._soon[key] = self.set_timer(delay, fire)

    # --- the scheduler's event stream ---

    @work(exclusive=True, group="scheduler-events", exit_on_error=False)
    async def follow_scheduler(self) -> None:
        try:
            async for event in self.client.events("/admin/events", on_status=self._connection):
                if isinstance(event.data, dict):
                    self._scheduler_event(event.data)
        except LoomError as e:  # 401, 403: retrying will not help
            if e.status_code in (401, 403):
                self.state.refused = refused_key_message(e.status_code)
            self._connection(False, self.state.refused or str(e))

    def _connection(self, up: bool, error: str | None) -> None:
        state = self.state
        state.connected, state.error = up, error
        if up:
            state.ever_connected = True
            state.throughput.forget()  # the daemon may have restarted: counters start again
            self.refresh_scheduler()
            self.refresh_jobs()
            self.refresh_providers()
        self.signals.connection.publish(up)

    def _scheduler_event(self, e: dict[str, Any]) -> None:
        kind = e.get("type", "")
        line = LogLine(e.get("time") or fmt.now(), "scheduler", kind, describe_scheduler_event(e))
        self.state.record(line)
        self.signals.log.publish(line)
        if kind == "finished":
            self.state.finished_since_sample += 1
        self._later("scheduler", SNAPSHOT_DEBOUNCE_S, self.refresh_scheduler)
        if kind == "queued" and e.get("priority") == "pipeline":
            self._later("jobs", JOBS_DEBOUNCE_S, self.refresh_jobs)  # perhaps a new job

    @work(exclusive=True, group="scheduler", exit_on_error=False)
    async def refresh_scheduler(self) -> None:
        snapshot = await self.client.scheduler()
        self.state.scheduler, self.state.scheduler_at = snapshot, fmt.now()
        self.signals.scheduler.publish(snapshot)

    @work(exclusive=True, group="providers", exit_on_error=False)
    async def refresh_providers(self) -> None:
        self.state.models = await self.client.models()
        self.set_providers(await self.client.providers())

    def set_providers(self, providers: dict[str, Any]) -> None:
        self.state.providers = providers
        self.signals.providers.publish(providers)

    # --- throughput ---

    def _throughput_tick(self) -> None:
        tp = self.state.throughput
        if not self.state.connected:
            return
        if tp.primed and not self.state.finished_since_sample:
            tp.idle(fmt.now())
            self.signals.throughput.publish(tp)
        else:
            self.state.finished_since_sample = 0
            self.sample_metrics()

    @work(exclusive=True, group="metrics", exit_on_error=False)
    async def sample_metrics(self) -> None:
        tokens, images = output_counters(await self.client.metrics())
        self.state.throughput.sample(fmt.now(), tokens, images)
        self.signals.throughput.publish(self.state.throughput)

    # --- jobs ---

    @work(exclusive=True, group="jobs", exit_on_error=False)
    async def refresh_jobs(self) -> None:
        page = await self.client.jobs(limit=100)
        self.state.set_jobs(page.get("data", []))
        for job in self.state.active_jobs():
            self.follow_job(job["id"])
        self.signals.jobs.publish(None)

    def follow_job(self, job_id: str) -> None:
        """Follow an active job's events (progress, state) until it ends."""
        if job_id not in self._following:
            self._following.add(job_id)
            self.run_worker(self._follow_job(job_id), group=f"job:{job_id}", exclusive=True, exit_on_error=False)

    async def _follow_job(self, job_id: str) -> None:
        try:
            job = await self.client.job(job_id)  # for last_event_id: only what happens from now on
            self.state.set_jobs([job])
            async for event in self.client.job_events(job_id, after=job.get("last_event_id") or 0):
                if isinstance(event.data, dict):
                    self._job_event(event.data)
        finally:
            self._following.discard(job_id)

    def _job_event(self, e: dict[str, Any]) -> None:
        job = self.state.apply_job_event(e)
        line = LogLine(e.get("created_at") or fmt.now(), "job", e.get("type", ""), describe_job_event(e))
        self.state.record(line)
        self.signals.log.publish(line)
        self._later("jobs-signal", 0.2, lambda: self.signals.jobs.publish(None))
        if job is not None and job.get("state") in FINAL:
            self._later("jobs", 0.1, self.refresh_jobs)  # finished_at and the rest

    # --- actions (any screen and the command palette use these) ---

    def perform(
        self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, then: Callable[[Any], object] | None = None
    ) -> None:
        """Run ``call(*args)`` in a worker; say so if it fails, else run ``then(result)``."""

        async def run() -> None:
            try:
                result = await call(*args)
            except LoomError as e:
                self.notify(f"{what} failed: {e}", severity="error", timeout=6)
                return
            except Exception as e:  # the network: connection refused, timeouts
                self.notify(f"{what} failed: {describe_error(e)}", severity="error", timeout=6)
                return
            self.notify(f"{what}: done", timeout=2)
            if then is not None:
                then(result)

        self.run_worker(run(), group=f"action:{what}", exclusive=True, exit_on_error=False)

    def _job_changed(self, job: dict[str, Any]) -> None:
        self.state.set_jobs([job])
        self.signals.jobs.publish(None)
        if job.get("state") not in FINAL:
            self.follow_job(job["id"])

    def cancel_job(self, job_id: str) -> None:
        self.perform(f"cancel job {job_id}", self.client.cancel_job, job_id, then=self._job_changed)

    def resume_job(self, job_id: str, then: Callable[[Any], object] | None = None) -> None:
        def resumed(job: dict[str, Any]) -> None:
            self._job_changed(job)
            if then is not None:
                then(job)

        self.perform(f"resume job {job_id}", self.client.resume_job, job_id, then=resumed)

    def open_job(self, job_id: str) -> None:
        self.push_screen(JobDetailScreen(job_id))

    def open_lineage(self, job_id: str) -> None:
        self.push_screen(LineageScreen(job_id))


def refused_key_message(status: int) -> str:
    """What to do when the daemon refuses the TUI's key: it reads /admin, so it needs an admin key."""
    import os

    if not os.environ.get("LOOM_API_KEY"):
        return "the daemon wants an API key: run `LOOM_API_KEY=<an admin key> loom tui`"
    if status == 403:
        return 'the key in LOOM_API_KEY is a user key; the TUI needs an admin key (role = "admin")'
    return "the daemon refused the key in LOOM_API_KEY: it is not one of its [[daemon.api_keys]]"
