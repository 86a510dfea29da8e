"""``flowd graph --format mermaid|dot|text``: a graph as text another tool (or a person) reads.

Nested DAGs and matrices are drawn as groups (Mermaid ``subgraph``, DOT ``cluster``) holding
their ops; an edge to or from a group stands for the whole group. With a run, each op shows its
status (and attempt when > 1) and is coloured by it. Matrices show at most ``max_children``
children, then a "... N more" line.
"""

from __future__ import annotations

import json
from collections import Counter

from flowd.dagview.model import Graph, GraphNode

__all__ = ["COLORS", "render"]

# fill, stroke per status (also used by the web UI)
COLORS = {
    "succeeded": ("#d8f5d0", "#2f8a1f"), "failed": ("#fbd5d5", "#c0392b"), "upstream_failed": ("#fbe3d5", "#c0392b"),
    "stopped": ("#fff1c2", "#b7950b"), "stopping": ("#fff1c2", "#b7950b"), "skipped": ("#eeeeee", "#999999"),
    "running": ("#d5e8fb", "#1f6fb2"), "retrying": ("#f0d5fb", "#8e44ad"), "queued": ("#e8eefc", "#5a7bd8"),
    "compiled": ("#f4f4f4", "#777777"), "created": ("#ffffff", "#aaaaaa"),
}


def render(graph: Graph, fmt: str, *, max_children: int = 20) -> str:
    if fmt == "mermaid":
        return _mermaid(graph, max_children)
    if fmt == "dot":
        return _dot(graph, max_children)
    if fmt == "text":
        return _text(graph, max_children)
    raise ValueError(f"unknown format {fmt!r} (mermaid, dot, text)")


def _label(node: GraphNode) -> str:
    text = node.name
    if node.kind not in ("job",):
        text += f" ({node.kind})"
    if node.status:
        text += f"\n{node.status}" + (f" #{node.attempts}" if node.attempts > 1 else "")
    return text


def _top(graph: Graph) -> list[GraphNode]:
    return [n for n in graph.nodes.values() if n.parent == "" or n.parent not in graph.nodes]


def _shown(graph: Graph, node: GraphNode, max_children: int) -> tuple[list[GraphNode], int]:
    children = [graph.nodes[p] for p in node.children]
    if node.kind == "matrix" and len(children) > max_children:
        return children[:max_children], len(children) - max_children
    return children, 0


# ---------------------------------------------------------------------------------- mermaid

def _mermaid(graph: Graph, max_children: int) -> str:
    ids = {path: f"n{i}" for i, path in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    used: set[str] = set()

    def esc(text: str) -> str:
        return text.replace('"', "#quot;").replace("\n", "<br/>")

    def emit(node: GraphNode, indent: str) -> None:
        if node.children:
            lines.append(f'{indent}subgraph {ids[node.path]} ["{esc(_label(node))}"]')
            children, more = _shown(graph, node, max_children)
            for child in children:
                emit(child, indent + "  ")
            if more:
                lines.append(f'{indent}  {ids[node.path]}_more["... {more} more"]')
            lines.append(f"{indent}end")
        else:
            shape = ('(["', '"])') if node.kind == "service" else ('["', '"]')
            lines.append(f"{indent}{ids[node.path]}{shape[0]}{esc(_label(node))}{shape[1]}")
        if node.status:
            lines.append(f"{indent}class {ids[node.path]} {node.status}")
            used.add(node.status)

    for node in _top(graph):
        emit(node, "  ")
    for up, down in graph.edges:
        lines.append(f"  {ids[up]} --> {ids[down]}")
    for status in sorted(used):
        fill, stroke = COLORS.get(status, ("#ffffff", "#888888"))
        lines.append(f"  classDef {status} fill:{fill},stroke:{stroke}")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- dot

def _dot(graph: Graph, max_children: int) -> str:
    ids = {path: f"n{i}" for i, path in enumerate(graph.nodes)}
    lines = ["digraph flowd {", "  rankdir=LR; compound=true;",
             '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
             f"  label={json.dumps(graph.pipeline + (f' ({graph.status})' if graph.status else ''))}; labelloc=t;"]

    def attrs(node: GraphNode) -> str:
        fill, stroke = COLORS.get(node.status or "", ("#ffffff", "#888888"))
        shape = ", shape=ellipse" if node.kind == "service" else ""
        return f'label={json.dumps(_label(node))}, fillcolor="{fill}", color="{stroke}"{shape}'

    def emit(node: GraphNode, indent: str) -> None:
        if node.children:
            fill, stroke = COLORS.get(node.status or "", ("#fafafa", "#888888"))
            lines.append(f"{indent}subgraph cluster_{ids[node.path]} {{")
            lines.append(f'{indent}  label={json.dumps(_label(node))}; style="rounded,filled"; fillcolor="{fill}"; color="{stroke}";')
            # an anchor for edges to and from the group
            lines.append(f'{indent}  {ids[node.path]} [shape=point, width=0.05, label=""];')
            children, more = _shown(graph, node, max_children)
            for child in children:
                emit(child, indent + "  ")
            if more:
                lines.append(f'{indent}  {ids[node.path]}_more [label="... {more} more", shape=plaintext];')
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{ids[node.path]} [{attrs(node)}];")

    for node in _top(graph):
        emit(node, "  ")
    for up, down in graph.edges:
        extra = []
        if graph.nodes[up].children:
            extra.append(f"ltail=cluster_{ids[up]}")
        if graph.nodes[down].children:
            extra.append(f"lhead=cluster_{ids[down]}")
        lines.append(f"  {ids[up]} -> {ids[down]}" + (f" [{', '.join(extra)}]" if extra else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- text

def _text(graph: Graph, max_children: int) -> str:
    upstream: dict[str, list[str]] = {}
    for up, down in graph.edges:
        upstream.setdefault(down, []).append(graph.nodes[up].name)
    head = f"pipeline {graph.pipeline}" + (f": {graph.status}" if graph.status else "")
    rows: list[tuple[str, str, str, str]] = []

    def emit(node: GraphNode, depth: int) -> None:
        status = (node.status or "") + (f" (attempt {node.attempts})" if node.attempts > 1 else "")
        after = ", ".join(upstream.get(node.path, []))
        rows.append(("  " * depth + node.name, node.kind, status, f"after {after}" if after else ""))
        children, more = _shown(graph, node, max_children)
        if node.kind == "matrix" and more:
            counts = Counter(graph.nodes[p].status or "?" for p in node.children)
            rows.append(("  " * (depth + 1) + f"... {more} more", "", ", ".join(f"{n} {s}" for s, n in counts.most_common()), ""))
        for child in children:
            emit(child, depth + 1)

    for node in _top(graph):
        emit(node, 1)
    widths = [max([len(r[i]) for r in rows] + [0]) for i in range(3)]
    lines = [head] + ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3]]).rstrip()
                      for r in rows]
    return "\n".join(lines) + "\n"
