"""Pictures of pipeline DAGs: the graph of a compiled pipeline (optionally with a run's
statuses), rendered as Mermaid, Graphviz DOT or text (``flowd graph``), and laid out in layers
for the web UI (``flowd ui``). Pure: no I/O."""

from flowd.dagview.layout import layout
from flowd.dagview.model import Graph, GraphNode, build_graph
from flowd.dagview.render import render
from flowd.dagview.summary import graph_of_summary

__all__ = ["Graph", "GraphNode", "build_graph", "graph_of_summary", "layout", "render"]
