"""Widgets of the Loom TUI: the status line, VRAM bars, throughput, the lineage tree, the image view."""

from .image_view import ImageView
from .lineage_tree import LineageTree
from .status import StatusBar
from .throughput import ThroughputPanel
from .vram_bar import VramBar

__all__ = ["ImageView", "LineageTree", "StatusBar", "ThroughputPanel", "VramBar"]
