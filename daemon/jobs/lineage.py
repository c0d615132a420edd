"""Lineage as the API returns it: the nodes a pipeline reported, as a tree.

A pipeline reports a node with ``ctx.emit("lineage", {"id": ..., "parent": ..., ...})``; later
events for the same id merge into it. A node marked ``"winner": true`` is the winner, and its
path from the root is given too. Any other fields (prompts, scores, image paths) pass through.
"""

from __future__ import annotations

from typing import Any


def build_tree(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    by_id = {str(n["id"]): {**n, "children": []} for n in nodes}
    roots = []
    for node in by_id.values():
        parent = node.get("parent")
        if parent is not None and str(parent) in by_id:
            by_id[str(parent)]["children"].append(node)
        else:
            roots.append(node)
    winner = next((nid for nid, n in by_id.items() if n.get("winner")), None)
    path: list[str] = []
    seen: set[str] = set()
    current = winner
    while current is not None and current in by_id and current not in seen:
        seen.add(current)
        path.append(current)
        parent = by_id[current].get("parent")
        current = None if parent is None else str(parent)
    path.reverse()
    return {"roots": roots, "winner": winner, "path": path}
