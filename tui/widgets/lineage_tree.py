"""The beam-search lineage as a tree: by iteration (each candidate with its parent), or by descent.

Labels carry the score and marks: ★ the winner, ✓ kept by a ranking, · not kept (scored, dropped
by the ranking: not a failure), ✖ failed (its
error is in the details), … not scored yet. An iteration's label counts its failed ones (✖2).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

Node = dict[str, Any]


def _order(n: Node) -> tuple[int, int]:
    return (n.get("iteration") or 0, n.get("index") or 0)


def label(n: Node, *, with_parent: bool) -> Text:
    score = n.get("score")
    failed = n.get("status") == "failed"
    if n.get("winner"):
        mark = ("★", "bold yellow")
    elif failed:
        mark = ("✖", "bold red")
    elif n.get("kept_in"):
        mark = ("✓", "green")
    elif score is None:
        mark = ("…", "dim")
    else:
        mark = ("·", "grey50")  # not kept; ✗ read as "failed"
    text = Text.assemble(mark, " ", (str(n["id"]), "bold" if n.get("winner") else ""))
    if failed:
        text.append(f" failed at {(n.get('error') or {}).get('stage', '?')}", style="red")
    else:
        status = f" {score:6.2f}" if isinstance(score, (int, float)) else f" {n.get('status', ''):>6}"
        text.append(status, style="cyan")
    if with_parent and n.get("parent"):
        text.append(f" ← {n['parent']}", style="dim")
    return text


class LineageTree(Tree[Node]):
    """Holds the nodes of one job's lineage; posts CandidateSelected as the cursor moves."""

    class CandidateSelected(Message):
        """The highlighted candidate changed (``node`` is its lineage dict)."""

        def __init__(self, node: Node) -> None:
            super().__init__()
            self.node = node

    by_descent: reactive[bool] = reactive(False)

    def __init__(self, **kw: Any) -> None:
        super().__init__("lineage", **kw)
        self.show_root = False
        self.guide_depth = 2
        self.nodes: dict[str, Node] = {}
        self._by_id: dict[str, TreeNode[Node]] = {}
        self._iterations: dict[int, TreeNode[Node]] = {}

    def show(self, nodes: dict[str, Node]) -> None:
        """Add new candidates and relabel known ones (the cursor stays where it is)."""
        self.nodes = nodes
        for n in sorted(nodes.values(), key=_order):
            known = self._by_id.get(n["id"])
            if known is None:
                self._add(n)
            else:
                known.data = n
                known.set_label(label(n, with_parent=not self.by_descent))
        for k, group in self._iterations.items():
            group.set_label(self._group_label(k))

    def _add(self, n: Node) -> None:
        if self.by_descent:
            parent = self._by_id.get(str(n.get("parent"))) or self.root
            node = parent.add(label(n, with_parent=False), data=n, expand=True)
        else:
            k = n.get("iteration") or 0
            if k not in self._iterations:
                self._iterations[k] = self.root.add(self._group_label(k), data={"iteration": k}, expand=True)
            node = self._iterations[k].add_leaf(label(n, with_parent=True), data=n)
        self._by_id[n["id"]] = node

    def _group_label(self, k: int) -> Text:
        kept = sorted((n for n in self.nodes.values() if k in (n.get("kept_in") or [])), key=_order)
        failed = sum(1 for n in self.nodes.values() if n.get("iteration") == k and n.get("status") == "failed")
        text = Text(f"Iteration {k}", style="bold")
        if kept:
            text.append(f" · kept {', '.join(n['id'] for n in kept)}", style="green")
        if failed:
            text.append(f" ✖{failed}", style="red")
        return text

    def watch_by_descent(self) -> None:
        selected = self.selected_id
        self.clear()
        self._by_id, self._iterations = {}, {}
        self.show(self.nodes)
        self.select_id(selected)

    @property
    def selected_id(self) -> str | None:
        node = self.cursor_node
        return node.data.get("id") if node is not None and node.data else None

    def select_id(self, node_id: str | None) -> None:
        node = self._by_id.get(node_id or "")
        if node is not None:
            # New nodes get their line when the tree is next drawn: move there after that.
            self.call_after_refresh(self.move_cursor, node)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[Node]) -> None:
        if event.node.data and "id" in event.node.data:
            self.post_message(self.CandidateSelected(event.node.data))
