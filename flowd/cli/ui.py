"""``flowd ui``: the web UI over a local state dir (docs/local-runtime.md), or with ``--daemon``
over the daemons' Kafka topics (docs/daemon.md; op logs from pods with ``--k8s``/``--kubeconfig``,
or from the daemons' ``--state-dir``). Read-only unless ``--allow-actions`` with a token
(``--token`` or ``$FLOWD_UI_TOKEN``): then the pages show stop, resume (and, for the daemon,
approve) buttons. Exit 0 on Ctrl-C, 2 usage."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("ui", help="serve the web UI over local runs", description="Serve a web UI of the runs in a state dir.")
    p.add_argument("--state-dir", metavar="DIR", default=None,
                   help="the state dir (default: $FLOWD_STATE_DIR, ...); with --daemon: the daemons' state dir, "
                   "to show the op logs of the local executor (default: none)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument("--allow-actions", action="store_true", help="enable stop/resume buttons (needs a token)")
    p.add_argument("--token", default=None, help="token the action buttons need (default: $FLOWD_UI_TOKEN)")
    p.add_argument("--daemon", action="store_true",
                   help="show the daemons' runs (Kafka: the status topic; commands to the runs topic) instead of a state dir")
    k8s = p.add_argument_group("op logs of the daemons' pods (with --daemon)")
    k8s.add_argument("--k8s", action="store_true",
                     help="read op logs through the pod log API (kube config: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster)")
    k8s.add_argument("--kubeconfig", metavar="FILE", default=None, help="kube config for the pod logs (implies --k8s)")
    k8s.add_argument("--namespace", metavar="NS", default="default", help="namespace of the runs' pods (default: default)")
    from flowd.cli.bus import add_bus_args

    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.runtime.store import default_state_dir
    from flowd.ui.local import LocalBackend
    from flowd.ui.server import make_server

    token = None
    if args.allow_actions:
        token = args.token or os.environ.get("FLOWD_UI_TOKEN")
        if not token:
            print("flowd ui: error: --allow-actions needs a token (--token or $FLOWD_UI_TOKEN)", file=sys.stderr)
            return 2
    backend: Any
    if args.daemon:
        from flowd.cli.bus import bus_config
        from flowd.ui.kafka import KafkaBackend

        k8s = ({"kubeconfig": args.kubeconfig, "namespace": args.namespace}
               if args.k8s or args.kubeconfig else None)
        backend = KafkaBackend(bus_config(args), state_dir=Path(args.state_dir) if args.state_dir else None, k8s=k8s)
    else:
        backend = LocalBackend(Path(args.state_dir) if args.state_dir else default_state_dir())
    try:
        server = make_server(backend, args.host, args.port, token=token)
    except OSError as exc:
        print(f"flowd ui: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"flowd ui: http://{host!s}:{port}/ (runs in {backend.where}; "
          f"{'actions enabled' if token else 'read-only'})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
