"""How the TUI writes sizes, durations, times and progress; ``now`` is its one clock (tests freeze it)."""

from __future__ import annotations

import time
import zlib

from rich.text import Text

#: Colours for models: each model keeps its colour wherever it is drawn (VRAM bar, tables).
PALETTE = ("#4f9dde", "#e0a03c", "#5fb86f", "#d4627a", "#9f7fd9", "#45b5aa", "#c9c14d", "#d97f4a")
STATE_STYLE = {
    "queued": "yellow",
    "running": "bold cyan",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "interrupted": "dark_orange",
}


def now() -> float:
    return time.time()


def colour(name: str) -> str:
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def size(n: float | None) -> str:
    """Bytes as MiB or GiB ("1.5 GiB", "300 MiB"); "–" for unknown."""
    if n is None:
        return "–"
    mib = n / 2**20
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib:.0f} MiB" if mib >= 10 or mib == int(mib) else f"{mib:.1f} MiB"


def duration(seconds: float | None) -> str:
    """Short and coarse: "0.4s", "12s", "3m05s", "2h10m"."""
    if seconds is None:
        return "–"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def ago(ts: float | None) -> str:
    return "–" if ts is None else f"{duration(now() - ts)} ago"


def clock(ts: float | None) -> str:
    """Local wall-clock time of day."""
    return "–" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def bar(percent: float | None, width: int = 12) -> Text:
    """A text progress bar with its percentage, for table cells."""
    p = max(0.0, min(100.0, percent or 0.0))
    filled = p / 100 * width
    full = int(filled)
    half = "▌" if filled - full >= 0.5 and full < width else ""
    text = Text("█" * full + half, style="cyan")
    text.append("░" * (width - full - len(half)), style="grey35")
    text.append(f" {p:3.0f}%")
    return text


def state(value: str) -> Text:
    return Text(value, style=STATE_STYLE.get(value, ""))
