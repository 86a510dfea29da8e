"""A layered (Sugiyama-style, simplified) layout of a graph, computed on the server so the web
UI needs no layout library: left to right by longest path from the sources, nodes ordered in
each layer by the mean position of their upstream nodes, nested DAGs laid out recursively
inside their box (unless collapsed). Matrices are one box (their children are a table in the UI).
"""

from __future__ import annotations

from typing import Any

from flowd.dagview.model import Graph

__all__ = ["NODE_H", "NODE_W", "layout"]

NODE_W, NODE_H = 170, 46
GAP_X, GAP_Y = 60, 22
PAD, HEADER = 14, 26


def layout(graph: Graph, *, collapsed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``{"width", "height", "boxes": [{path, x, y, w, h, group, expanded}], "edges":
    [{from, to, points: [[x, y]...]}]}`` in pixels; a box's (x, y) is its top-left corner."""
    boxes: dict[str, dict[str, Any]] = {}
    edges_by_parent: dict[str, list[tuple[str, str]]] = {}
    for up, down in graph.edges:
        edges_by_parent.setdefault(graph.nodes[down].parent, []).append((up, down))
    top = [p for p, n in graph.nodes.items() if n.parent == "" or n.parent not in graph.nodes]

    def expandable(path: str) -> bool:
        node = graph.nodes[path]
        return bool(node.children) and node.kind != "matrix"

    def place(children: list[str], parent: str, ox: float, oy: float) -> tuple[float, float]:
        """Lay out ``children`` with their top-left at (ox, oy); returns (width, height)."""
        sizes: dict[str, tuple[float, float]] = {}
        for path in children:
            if expandable(path) and path not in collapsed:
                # measure the inside first (at a dummy origin), then place for real below
                w, h = place(graph.nodes[path].children, path, 0, 0)
                sizes[path] = (max(NODE_W, w + 2 * PAD), h + 2 * PAD + HEADER)
            else:
                sizes[path] = (NODE_W, NODE_H)
        local = [(u, d) for u, d in edges_by_parent.get(parent, []) if u in sizes and d in sizes]
        ups: dict[str, list[str]] = {p: [] for p in children}
        for u, d in local:
            ups[d].append(u)
        layer: dict[str, int] = {}

        def depth(p: str, seen: frozenset[str] = frozenset()) -> int:
            if p not in layer:
                layer[p] = 0 if not ups[p] else 1 + max(depth(u, seen | {p}) for u in ups[p] if u not in seen)
            return layer[p]

        for p in children:
            depth(p)
        layers: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
        for p in children:
            layers[layer[p]].append(p)
        # order: mean index of upstream nodes in the previous layer (two sweeps)
        index = {p: i for col in layers for i, p in enumerate(col)}
        for _ in range(2):
            for col in layers[1:]:
                col.sort(key=lambda p: sum(index[u] for u in ups[p]) / len(ups[p]) if ups[p] else index[p])
                index.update({p: i for i, p in enumerate(col)})
        heights = [sum(sizes[p][1] for p in col) + GAP_Y * (len(col) - 1) for col in layers]
        total_h = max(heights, default=0)
        x = ox
        for col, col_h in zip(layers, heights, strict=True):
            col_w = max(sizes[p][0] for p in col)
            y = oy + (total_h - col_h) / 2
            for p in col:
                w, h = sizes[p]
                expanded = expandable(p) and p not in collapsed
                boxes[p] = {"path": p, "x": x, "y": y, "w": w, "h": h, "group": bool(graph.nodes[p].children),
                            "expanded": expanded}
                if expanded:
                    place(graph.nodes[p].children, p, x + PAD, y + PAD + HEADER)
                y += h + GAP_Y
            x += col_w + GAP_X
        return (x - ox - GAP_X if layers else 0), total_h

    width, height = place(top, "", PAD, PAD)
    edges = []
    for up, down in graph.edges:
        a, b = boxes.get(up), boxes.get(down)
        if a is None or b is None:
            continue  # inside a collapsed group
        start = [a["x"] + a["w"], a["y"] + (a["h"] if not a["expanded"] else HEADER) / 2]
        end = [b["x"], b["y"] + (b["h"] if not b["expanded"] else HEADER) / 2]
        mid = (start[0] + end[0]) / 2
        edges.append({"from": up, "to": down, "points": [start, [mid, start[1]], [mid, end[1]], end]})
    # boxes whose parent is collapsed (or a matrix) are not drawn
    return {"width": width + 2 * PAD, "height": height + 2 * PAD, "boxes": list(boxes.values()), "edges": edges}
