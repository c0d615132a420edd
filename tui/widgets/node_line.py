"""A cluster node's line above its devices on the dashboard: name, address, GPUs, resources."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt

#: Ray's own resources, shown as GPUs and memory rather than by name.
_BUILT_IN = {"CPU", "GPU", "memory", "object_store_memory"}


class NodeLine(Static):
    """``● beta  10.0.0.2  1 GPU · 8 CPU · big 2``, or why Loom cannot use the node."""

    def __init__(self, node: dict[str, Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.node = node
        #: The dashboard's key for this line ("node NAME"), to redraw lines in place.
        self.row_key = ""
        self.show(node)

    def show(self, node: dict[str, Any]) -> None:
        self.node = node
        line = Text(no_wrap=True, overflow="ellipsis")
        usable = node.get("usable", True)
        line.append("● " if usable else "✗ ", style="green" if usable else "red")
        line.append(node["name"], style="bold")
        line.append(f"  {node.get('address') or ''}  ", style="dim")
        if not usable:
            line.append(node.get("error") or "unusable", style="red")
        else:
            resources = node.get("resources") or {}
            parts = [
                f"{node.get('gpus', 0)} GPU",
                f"{resources.get('CPU', 0):g} CPU",
                f"{fmt.size(node.get('memory'))} RAM",
            ]
            parts += [f"{k} {v:g}" for k, v in sorted(resources.items()) if k not in _BUILT_IN]
            line.append(" · ".join(parts))
        self.update(line)
