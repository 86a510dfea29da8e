"""``flowd graph FILE|RUN [--format mermaid|dot|text]``: a picture of a pipeline's DAG.

FILE is compiled (as ``flowd check`` does); RUN is a local run (its id, a unique prefix or
``last``, in ``--state-dir``), or with ``--daemon`` a daemons' run (its record in the ``status``
topic): then each op shows its status. Exit 0, 1 unknown run (or Kafka unreachable), 2 invalid
spec or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("graph", help="draw a pipeline's DAG (mermaid, dot or text)",
                              description="Print a pipeline's DAG as Mermaid, Graphviz DOT or text; given a run, "
                              "with each op's status.")
    p.add_argument("target", metavar="FILE|RUN", help="a Polyaxonfile, a local run id (prefix, `last`), or with --daemon a daemons' run id")
    p.add_argument("--format", "-f", choices=("mermaid", "dot", "text"), default="text", help="default text")
    p.add_argument("--param", "-P", action="append", default=[], metavar="NAME=VALUE", help="with FILE: set an input")
    p.add_argument("--hub", metavar="DIR", default=None, help="with FILE: hub folder (default: $FLOWD_HUB)")
    p.add_argument("--state-dir", metavar="DIR", default=None, help="with RUN: the state dir (default: $FLOWD_STATE_DIR, ...)")
    p.add_argument("--max-children", type=int, default=20, metavar="N", help="matrix children drawn (default 20)")
    p.add_argument("--daemon", action="store_true",
                   help="RUN is a daemons' run: draw it from the status topic (with --brokers/--prefix)")
    from flowd.cli.bus import add_bus_args

    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.dagview import build_graph, render

    target = Path(args.target)
    if args.daemon:
        graph = _daemon_graph(args)
        if graph is None:
            return 1
    elif target.is_file():
        from flowd.cli.check import parse_params
        from flowd.spec import compile_path

        params = parse_params(args.param)
        if isinstance(params, str):
            print(f"flowd graph: error: {params}", file=sys.stderr)
            return 2
        result = compile_path(target, params=params or None, hub=args.hub or os.environ.get("FLOWD_HUB") or None)
        for diag in result.errors:
            print(diag.format() if callable(getattr(diag, "format", None)) else str(diag), file=sys.stderr)
        if not result.valid or result.op is None:
            return 2
        graph = build_graph(result.op)
    else:
        from flowd.runtime.history import load_run
        from flowd.runtime.store import SnapshotStore, default_state_dir

        store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
        run_id = store.resolve(args.target)
        loaded = load_run(store, run_id) if run_id else None
        if loaded is None:
            print(f"flowd graph: {args.target!r} is neither a file nor a run in {store.root} "
                  "(a daemons' run: add --daemon)", file=sys.stderr)
            return 1
        _, engine, view = loaded
        assert run_id is not None  # loaded: the run exists
        graph = build_graph(engine.runs[run_id].pipeline, view)  # the pipeline as it was submitted
    sys.stdout.write(render(graph, args.format, max_children=args.max_children))
    return 0


def _daemon_graph(args: argparse.Namespace) -> Any:
    """The graph of a daemons' run from its status-view record, or None (said on stderr)."""
    import anyio

    from flowd.cli.bus import bus_config
    from flowd.daemon.client import run_summaries
    from flowd.daemon.kafka import BusError
    from flowd.dagview import graph_of_summary

    config = bus_config(args)
    try:
        summary = anyio.run(lambda: run_summaries(config, run_id=args.target)).get(args.target)
    except BusError as exc:
        print(f"flowd graph: {exc}", file=sys.stderr)
        return None
    if summary is None:
        print(f"flowd graph: no run {args.target!r} in {config.prefix}status on {config.brokers} "
              "(flowd runs --daemon lists them)", file=sys.stderr)
        return None
    if summary.ops_omitted:
        print(f"flowd graph: run {args.target} has too many ops for the status view to hold its graph", file=sys.stderr)
        return None
    return graph_of_summary(summary)
