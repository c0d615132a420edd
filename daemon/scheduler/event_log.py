"""The scheduler's events an operator wants in the daemon's log: a model loaded, unloaded or
evicted (and why), a worker lost, a call failed. Everything else (queued, started, finished) is
per request and goes to the access log and ``GET /admin/events`` instead."""

from __future__ import annotations

import logging

log = logging.getLogger("loom.scheduler")


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.0f} MiB"


def log_event(event: dict) -> None:
    """An :class:`EventBus` listener."""
    kind = event["type"]
    if kind == "loaded":
        log.info(
            "loaded %s on %s in %.1f s (%s, %s worker%s)",
            event["model"],
            event["device"],
            event.get("seconds") or 0.0,
            _mib(event.get("footprint")),
            event.get("executor") or "?",
            f", pid {event['pid']}" if event.get("pid") else "",
        )
    elif kind in ("unloaded", "evicted"):
        why = event.get("reason") or kind
        error = f": {event['error']}" if event.get("error") else ""
        level = logging.WARNING if why in ("crashed", "oom", "killed", "node_lost") else logging.INFO
        log.log(
            level,
            "%s %s from %s (%s, %s freed)%s",
            kind,
            event["model"],
            event["device"],
            why,
            _mib(event.get("footprint")),
            error,
        )
    elif kind == "failed":
        log.warning(
            "%s failed on %s (%s): %s",
            event.get("item"),
            event["model"],
            event.get("device"),
            event.get("error") or "?",
        )
