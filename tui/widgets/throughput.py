"""Throughput sparklines: completion tokens per second and images per minute."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from ..state import Throughput


class ThroughputPanel(Vertical):
    def compose(self) -> ComposeResult:
        with Horizontal(classes="spark-row"):
            yield Label("tokens/s", id="tokens-label", classes="spark-label")
            yield Sparkline([0.0], id="tokens-spark")
        with Horizontal(classes="spark-row"):
            yield Label("images/min", id="images-label", classes="spark-label")
            yield Sparkline([0.0], id="images-spark")

    def show(self, tp: Throughput) -> None:
        tokens, images = list(tp.tokens_per_s), list(tp.images_per_min)
        self.query_one("#tokens-label", Label).update(f"tokens/s {tokens[-1]:>7.1f}")
        self.query_one("#images-label", Label).update(f"img/min  {images[-1]:>7.1f}")
        self.query_one("#tokens-spark", Sparkline).data = tokens
        self.query_one("#images-spark", Sparkline).data = images
