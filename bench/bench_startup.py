"""Start-up to the first 200 from /health with no model loaded, and resident memory then.

Run: .venv/bin/python bench/bench_startup.py
Target: under 1.5 s. Baseline, side by side: a bare Litestar app under uvicorn.
"""

from __future__ import annotations

import statistics
import sys

from _harness import ROOT, Server, loom_server

CONFIG_PATH = ROOT / "plugins.toml"
RUNS = 5


def main() -> None:
    loom_t, loom_rss, bare_t, bare_rss = [], [], [], []
    for _ in range(RUNS):
        with loom_server(CONFIG_PATH.read_text()) as s:
            loom_t.append(s.startup_s)
            loom_rss.append(s.rss_mb())
        with Server([sys.executable, str(ROOT / "bench" / "bare_litestar.py"), "{port}"]) as s:
            bare_t.append(s.startup_s)
            bare_rss.append(s.rss_mb())
    lt, bt = statistics.median(loom_t), statistics.median(bare_t)
    print(f"| server | start-up to /health 200, median (min-max) of {RUNS} | RSS after start |")
    print("|---|---|---|")
    for name, times, rss in (
        ("loom serve, shipped plugins.toml", loom_t, loom_rss),
        ("bare Litestar + uvicorn", bare_t, bare_rss),
    ):
        spread = f"{statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f})"
        print(f"| {name} | {spread} | {statistics.median(rss):.0f} MB |")
    per_run = [a / b for a, b in zip(loom_t, bare_t, strict=True)]
    print(
        f"\nratio loom/bare start-up: {lt / bt:.2f} (runs {min(per_run):.2f}-{max(per_run):.2f}); "
        "target: loom under 1.5 s"
    )
    print("command: .venv/bin/python bench/bench_startup.py")


if __name__ == "__main__":
    main()
