"""What the TUI knows about the daemon: the scheduler snapshot, jobs, the event log and throughput.

Plain data, filled by the app's workers from the daemon's events and read by the screens; nothing
here does I/O, so tests can build a state by hand.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import format as fmt

ACTIVE = frozenset({"queued", "running"})
FINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


class LogLine(NamedTuple):
    time: float
    source: str  # "scheduler" or "job"
    kind: str  # the event type
    text: str

    def matches(self, words: list[str]) -> bool:
        hay = f"{self.source} {self.kind} {self.text}".lower()
        return all(w in hay for w in words)


def describe_scheduler_event(e: dict[str, Any]) -> str:
    """One line for a scheduler event, as the log shows it."""
    kind, model, device, item = e.get("type", "?"), e.get("model"), e.get("device"), e.get("item")
    if kind == "queued":
        return f"{item} queued for {model} ({e.get('priority')}, depth {e.get('depth')})"
    if kind == "started":
        return f"{item} started on {model} ({device}) after {fmt.duration(e.get('waited'))}"
    if kind in ("finished", "failed", "cancelled"):
        what = item or f"load of {model}"
        took = f" in {fmt.duration(e['seconds'])}" if e.get("seconds") is not None else ""
        err = f": {e['error']}" if e.get("error") else ""
        return f"{what} {kind} on {model}{took}{err}"
    if kind == "loaded":
        return f"{model} loaded on {device}: {fmt.size(e.get('footprint'))} in {fmt.duration(e.get('seconds'))}"
    if kind in ("evicted", "unloaded"):
        why = f" ({e['reason']})" if e.get("reason") else ""
        return f"{model} {kind} from {device}{why}, freed {fmt.size(e.get('footprint'))}"
    if kind == "memory":
        resident = ", ".join(e.get("resident") or []) or "nothing"
        return f"{device}: {fmt.size(e.get('used'))} of {fmt.size(e.get('budget'))} used; resident: {resident}"
    if kind == "pinned":
        return f"{model} {'pinned' if e.get('pinned') else 'unpinned'} on {device}"
    rest = {k: v for k, v in e.items() if k not in ("type", "time")}
    return f"{kind} {rest}"


def describe_job_event(e: dict[str, Any]) -> str:
    """One line for a job event (the ``data`` of a /v1/jobs/{id}/events message)."""
    job, kind, data = e.get("job_id", "?"), e.get("type", "?"), e.get("data") or {}
    if kind == "state":
        extra = f" (attempt {data['attempt']})" if data.get("attempt") else ""
        err = data.get("error")
        err = f": {err.get('message', err) if isinstance(err, dict) else err}" if err else ""
        return f"job {job} {data.get('state')}{extra}{err}"
    if kind == "progress":
        msg = f" · {data['message']}" if data.get("message") else ""
        return f"job {job} {data.get('progress', 0):.0f}% {data.get('stage', '')}{msg}"
    if kind == "step":
        return f"job {job} step {data.get('key')} {fmt.duration(data.get('seconds'))}"
    if kind == "lineage":
        score = f" score {data['score']:.2f}" if isinstance(data.get("score"), (int, float)) else ""
        return f"job {job} candidate {data.get('id')} {data.get('status', '')}{score}"
    if kind == "preview":
        size = f" of a {data.get('width')}x{data.get('height')} image" if data.get("width") else ""
        return f"job {job} preview {data.get('index', 0) + 1}/{data.get('of', '?')} from {data.get('model')}{size}"
    if kind == "iteration":
        return f"job {job} iteration {data.get('iteration')}: kept {', '.join(data.get('kept') or [])}"
    return f"job {job} {kind} {data}"


_SAMPLE = re.compile(r"^(loom_tokens_total|loom_images_total)\{[^}]*\}\s+([0-9.eE+-]+)", re.M)


def output_counters(metrics_text: str) -> tuple[float, float]:
    """Total completion tokens and images produced, summed over models, from /metrics."""
    totals = {"loom_tokens_total": 0.0, "loom_images_total": 0.0}
    for name, value in _SAMPLE.findall(metrics_text):
        totals[name] += float(value)
    return totals["loom_tokens_total"], totals["loom_images_total"]


@dataclass
class Throughput:
    """Tokens/s and images/min, one sample per tick, from the daemon's output counters."""

    size: int = 60
    tokens_per_s: deque = field(default_factory=deque)
    images_per_min: deque = field(default_factory=deque)
    _last: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        self.tokens_per_s = deque([0.0] * self.size, maxlen=self.size)
        self.images_per_min = deque([0.0] * self.size, maxlen=self.size)

    def sample(self, t: float, tokens: float, images: float) -> None:
        last, self._last = self._last, (t, tokens, images)
        if last is None:
            return
        dt = max(t - last[0], 1e-3)
        # Counters start again from zero when the daemon restarts: count nothing for that tick.
        self.tokens_per_s.append(max(0.0, tokens - last[1]) / dt if tokens >= last[1] else 0.0)
        self.images_per_min.append(max(0.0, images - last[2]) / dt * 60 if images >= last[2] else 0.0)

    def idle(self, t: float) -> None:
        """Nothing finished since the last tick: both rates are zero (no need to ask the daemon)."""
        self.tokens_per_s.append(0.0)
        self.images_per_min.append(0.0)
        if self._last is not None:
            self._last = (t, *self._last[1:])

    @property
    def primed(self) -> bool:
        return self._last is not None

    def forget(self) -> None:
        self._last = None


class DaemonState:
    def __init__(self, url: str = "") -> None:
        self.url = url
        self.connected = False
        self.ever_connected = False
        self.error: str | None = None
        #: Set when the daemon refused the key (401/403): what to do about it. Retrying won't help.
        self.refused: str | None = None
        self.scheduler: dict[str, Any] | None = None
        self.scheduler_at = 0.0  # when the snapshot was taken (fmt.now())
        self.jobs: dict[str, dict[str, Any]] = {}
        self.providers: dict[str, Any] | None = None
        self.models: list[dict[str, Any]] = []
        self.log: deque[LogLine] = deque(maxlen=2000)
        self.throughput = Throughput()
        self.finished_since_sample = 0

    # --- jobs ---

    def job_list(self) -> list[dict[str, Any]]:
        return sorted(self.jobs.values(), key=lambda j: j.get("created_at") or 0, reverse=True)

    def active_jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.job_list() if j.get("state") in ACTIVE]

    def set_jobs(self, jobs: list[dict[str, Any]]) -> None:
        for job in jobs:
            self.jobs[job["id"]] = {**self.jobs.get(job["id"], {}), **job}

    def apply_job_event(self, e: dict[str, Any]) -> dict[str, Any] | None:
        """Fold a job event into the job it belongs to; returns that job (None if unknown)."""
        job = self.jobs.get(e.get("job_id", ""))
        if job is None:
            return None
        data = e.get("data") or {}
        if e.get("type") == "state":
            job["state"] = data.get("state", job.get("state"))
            if job["state"] == "succeeded":
                job["progress"] = 100.0
            if data.get("error"):
                job["error"] = data["error"]
        elif e.get("type") == "progress":
            job.update(progress=data.get("progress", job.get("progress")), stage=data.get("stage", job.get("stage")))
            job["message"] = data.get("message", "")
        return job

    # --- log ---

    def record(self, line: LogLine) -> None:
        self.log.append(line)

    # --- scheduler ---

    def resident(self) -> list[tuple[str, dict[str, Any]]]:
        """(device, resident model) pairs from the snapshot."""
        if not self.scheduler:
            return []
        return [(d["name"], r) for d in self.scheduler.get("devices", []) for r in d.get("resident", [])]

    def keep_alive_left(self, r: dict[str, Any]) -> float | None:
        """Seconds until an idle resident model is unloaded; None if it never will be (or is busy)."""
        ka = r.get("keep_alive")
        if ka is None or r.get("pinned") or r.get("running") or r.get("queued"):
            return None
        idle = (r.get("idle_seconds") or 0.0) + (fmt.now() - self.scheduler_at)
        return max(0.0, ka - idle)
