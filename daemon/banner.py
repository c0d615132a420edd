"""What ``loom serve`` says when it starts: where it listens, which config and data dir it uses,
the models it serves and the devices it has, so an operator reading the log knows what is running."""

from __future__ import annotations

from pathlib import Path

from .cli_address import url_for
from .services import Services


def _size(n: int | None) -> str:
    return "unlimited" if n is None else f"{n / 2**30:.1f} GiB"


def startup_banner(services: Services, config_path: Path, version: str) -> list[str]:
    config = services.config
    lines = [
        f"Loom {version} serving {url_for(config.daemon.host, config.daemon.port)} "
        f"(OpenAI API at /v1, web UI at /ui, log level {config.daemon.log_level})",
        f"config: {config_path}",
        f"data dir: {config.data_dir}",
        "keys: " + ("required" if services.keys.enabled else "none (loopback only)"),
    ]
    for dev in services.scheduler.devices.values():
        info = dev.info
        state = "" if info.available else f" (unavailable: {info.reason})"
        lines.append(f"device {info.name}: {info.kind}, budget {_size(info.budget)}{state}")
    for entry in services.registry:
        caps = ",".join(sorted(c.value for c in entry.capabilities))
        aliases = f" (aliases: {', '.join(entry.config.aliases)})" if entry.config.aliases else ""
        lines.append(f"model {entry.id}: {entry.provider_cls.name} [{caps}] on {entry.executor}{aliases}")
    retention = config.jobs.retention
    if retention not in ("never", -1):
        lines.append(f"jobs: finished jobs older than {retention} are deleted ([jobs] retention)")
    return lines
