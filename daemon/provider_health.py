"""Health of remote providers: a scheduled check of each upstream service, feeding the router.

A remote provider (``local = False``) takes part by returning a key from ``health_key()`` (models
with the same key share an upstream and one check); ``health_info()``, ``async check_health()``,
``health_interval`` and ``remote_model`` are declared on :class:`loom.sdk.Provider`. A timer
(:mod:`loom.daemon.timers`) checks every upstream; the results mark the router's ``healthy``
table, so requests skip to a fallback while an upstream is down, and show in
``GET /admin/providers``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loom.sdk.errors import AuthenticationFailed, LoomError
from loom.sdk.protocols import Provider

from .models import ModelEntry, ModelRegistry
from .routing import ModelRouter
from .timers import Timers

log = logging.getLogger("loom.health")
DEFAULT_INTERVAL = 30.0
CHECK_TIMEOUT = 15.0


@dataclass
class Upstream:
    """One upstream service and the models it serves."""

    key: str
    entries: list[ModelEntry]
    status: str = "unknown"  # ok | down | auth_failed | no_key | unknown (not checked yet)
    error: str | None = None
    latency_ms: float | None = None
    checked_at: float | None = None
    upstream_models: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def provider(self) -> Provider:
        return self.entries[0].instance()

    @property
    def healthy(self) -> bool:
        return self.status in ("ok", "unknown")


class ProviderHealth:
    def __init__(self, registry: ModelRegistry, router: ModelRouter, timers: Timers) -> None:
        self.router = router
        self.upstreams: dict[str, Upstream] = {}
        for entry in registry:
            if entry.local:
                continue
            provider = entry.instance()  # a remote provider checks its options here (ConfigError)
            key = provider.health_key()
            if key is not None:
                self.upstreams.setdefault(key, Upstream(key, [])).entries.append(entry)
        intervals = (u.provider.health_interval for u in self.upstreams.values())
        self.interval = min(intervals, default=DEFAULT_INTERVAL)
        for upstream in self.upstreams.values():
            self._refresh_info(upstream)
            key = upstream.info.get("api_key")
            if isinstance(key, dict) and key.get("set") is False:
                # Known without asking the network: route around it from the first request.
                self._record(upstream, "no_key", f"environment variable {key.get('env')} is not set")
        if self.upstreams:  # nothing remote: no timer
            timers.every(self.interval, self.check_all, id="provider-health", first=0)

    # --- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the upstreams' clients (the timer is stopped by the timers service)."""
        for upstream in self.upstreams.values():
            try:
                await upstream.provider.aclose()
            except Exception:  # closing at shutdown: nothing useful to do about it
                log.debug("closing %s failed", upstream.key, exc_info=True)

    # --- checking -----------------------------------------------------------------------------

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(u) for u in self.upstreams.values()))

    async def check(self, upstream: Upstream) -> None:
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(upstream.provider.check_health(), CHECK_TIMEOUT)
        except AuthenticationFailed as e:
            status = "no_key" if e.code == "provider_key_missing" else "auth_failed"
            self._record(upstream, status, e.message)
        except LoomError as e:
            self._record(upstream, "down", e.message)
        except TimeoutError:
            self._record(upstream, "down", f"the health check took longer than {CHECK_TIMEOUT:g}s")
        except Exception as e:  # a provider bug: say which, without its (possibly sensitive) text
            log.debug("health check of %s raised", upstream.key, exc_info=True)
            self._record(upstream, "down", f"the health check failed: {type(e).__name__}")
        else:
            upstream.upstream_models = list((result or {}).get("upstream_models") or []) or None
            self._record(upstream, "ok", None)
        upstream.latency_ms = round((time.perf_counter() - start) * 1000, 2)
        self._refresh_info(upstream)

    def _record(self, upstream: Upstream, status: str, error: str | None) -> None:
        if status != upstream.status:
            if status != "ok":
                log.warning("upstream %s is %s: %s", upstream.key, status, error)
            elif upstream.status != "unknown":
                log.info("upstream %s is back", upstream.key)
        upstream.status, upstream.error = status, error
        upstream.checked_at = time.time()
        for entry in upstream.entries:
            self.router.healthy[entry.id] = upstream.healthy

    def _refresh_info(self, upstream: Upstream) -> None:
        upstream.info = dict(upstream.provider.health_info())

    # --- reporting ----------------------------------------------------------------------------

    def report(self) -> list[dict]:
        out = []
        for u in self.upstreams.values():
            models = []
            for entry in u.entries:
                remote = entry.instance().remote_model
                listed = None if u.upstream_models is None or remote is None else remote in u.upstream_models
                models.append({"id": entry.id, "remote_id": remote, "listed": listed})
            out.append(
                {
                    "upstream": u.key,
                    **u.info,
                    "status": u.status,
                    "healthy": u.healthy,
                    "error": u.error,
                    "latency_ms": u.latency_ms,
                    "checked_at": _iso(u.checked_at),
                    "models": models,
                }
            )
        return out


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
