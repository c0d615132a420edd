"""Widgets of the Loom TUI: the status line, VRAM bars, cluster nodes, throughput, the lineage tree, the image view."""

from .image_view import ImageView
from .lineage_tree import LineageTree
from .node_line import NodeLine
from .status import StatusBar
from .throughput import ThroughputPanel
from .vram_bar import VramBar

__all__ = ["ImageView", "LineageTree", "NodeLine", "StatusBar", "ThroughputPanel", "VramBar"]
