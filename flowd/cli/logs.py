"""``flowd logs RUN [OP] [--attempt N] [-f]``: the output of a run's jobs.

Local runs (``flowd run``, and daemons with the local executor): read from the run's attempt
directories in the state dir (``--state-dir``, else ``$FLOWD_STATE_DIR``, else the default).
Runs on Kubernetes: read through the pod log API, the pods found by their run/op/attempt labels —
without being told for a ``flowd run --executor k8s`` run (its run dir says where its pods are),
with ``--k8s`` (and ``--namespace``, ``--kubeconfig``) for a daemon's runs.

Without OP every op's logs are printed, each line prefixed by ``[op]`` (``[op#2]`` for attempt
2); with OP only that op's (and, for a nested DAG or a matrix, the ops inside it). Without
``--attempt`` the latest attempt of each op. Exit 0, 1 unknown run/op or failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("logs", help="print the logs of a run's jobs",
                              description="Print the stdout/stderr of a run's jobs (local runs from the state dir; "
                              "runs on Kubernetes through the pod log API with --k8s).")
    p.add_argument("run_id", metavar="RUN", help="run id (local runs: also a unique prefix, or `last`)")
    p.add_argument("op", metavar="OP", nargs="?", default=None, help="only this op (path: op, outer/inner, sweep[3])")
    p.add_argument("--attempt", type=int, default=None, metavar="N", help="this attempt (default: the latest of each op)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run ends (Ctrl-C stops)")
    p.add_argument("--stream", choices=("all", "stdout", "stderr"), default="all", help="local runs: which stream (default all)")
    p.add_argument("--state-dir", metavar="DIR", default=None, help="local runs: the state dir (default: $FLOWD_STATE_DIR, ...)")
    k8s = p.add_argument_group("runs on Kubernetes")
    k8s.add_argument("--k8s", action="store_true", help="read the pods' logs through the Kubernetes API")
    k8s.add_argument("--kubeconfig", metavar="FILE", default=None)
    k8s.add_argument("--namespace", metavar="NS", default="default", help="namespace of the run's pods (default: default)")
    p.set_defaults(func=run)


def _label(path: str, attempt: int) -> str:
    return path if attempt <= 1 else f"{path}#{attempt}"


def run(args: argparse.Namespace) -> int:
    if args.k8s:
        return _run_k8s(args, run_id=args.run_id, namespace=args.namespace, kubeconfig=args.kubeconfig)
    from flowd.runtime.logs import LogFollower, attempt_logs, pod_location
    from flowd.runtime.store import SnapshotStore, default_state_dir

    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    run_id = store.resolve(args.run_id)
    going: Callable[[], bool] = lambda: run_id is not None and store.is_active(run_id)  # noqa: E731 - a flowd holds it
    if run_id is None and (store.run_dir(args.run_id) / "attempts").is_dir():
        # a daemon's run with the local executor: attempt dirs under the daemon's state dir, no
        # snapshot there (the daemon's state is on Kafka), so no lock says whether it goes on
        run_id = args.run_id
        going = _AttemptsGoing(store.run_dir(run_id))
    if run_id is None:
        print(f"flowd logs: no run {args.run_id!r} in {store.root} (flowd runs lists them; "
              "for a daemon's run on Kubernetes add --k8s --namespace NS; with the local executor "
              "--state-dir the daemon's state dir)", file=sys.stderr)
        return 1
    run_dir = store.run_dir(run_id)
    pods = pod_location(run_dir)
    if pods is not None:  # a `flowd run --executor k8s` run: its logs are its pods'
        return _run_k8s(args, run_id=run_id, namespace=str(pods["namespace"]),
                        kubeconfig=args.kubeconfig or pods.get("kubeconfig"), context=pods.get("context"),
                        run_active=lambda: store.is_active(run_id))
    attempts = attempt_logs(run_dir, op=args.op, attempt=args.attempt)
    if args.attempt is None:  # the latest attempt of each op
        latest: dict[str, Any] = {}
        for item in attempts:
            latest[item.path] = item
        attempts = sorted(latest.values(), key=lambda a: a.path)
    if not attempts and not args.follow:
        what = f"op {args.op!r}" if args.op else "any op"
        print(f"flowd logs: run {run_id} has no logs for {what}" + (f" attempt {args.attempt}" if args.attempt else ""),
              file=sys.stderr)
        return 1
    streams = ("stdout", "stderr") if args.stream == "all" else (args.stream,)
    single = args.op is not None and len({a.path for a in attempts}) == 1
    follower = LogFollower(run_dir, op=args.op, attempt=args.attempt, streams=streams)
    wanted = {(a.path, a.attempt) for a in attempts}

    def emit(final: bool) -> None:
        for path, attempt, _stream, line in follower.poll(final=final):
            if args.attempt is None and not args.follow and (path, attempt) not in wanted:
                continue
            sys.stdout.write(line + "\n" if single else f"[{_label(path, attempt)}] {line}\n")
        sys.stdout.flush()

    try:
        emit(final=not args.follow)
        while args.follow:
            time.sleep(0.25)
            if not going():
                emit(final=True)
                break
            emit(final=False)
    except KeyboardInterrupt:
        return 0
    return 0


class _AttemptsGoing:
    """``-f`` on a daemon's run dir: the run goes on while an attempt has no ``exit_code`` yet,
    or the last one ended less than ``QUIET`` seconds ago (the next op may be starting), as
    ``--k8s -f`` does with pods."""

    QUIET = 5.0

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def __call__(self) -> bool:
        ended = []
        for attempt in (self.run_dir / "attempts").iterdir():
            if not attempt.is_dir():
                continue
            try:
                ended.append((attempt / "exit_code").stat().st_mtime)
            except FileNotFoundError:
                return True  # still running
        return bool(ended) and time.time() - max(ended) < self.QUIET


def _run_k8s(args: argparse.Namespace, *, run_id: str, namespace: str, kubeconfig: str | None,
             context: str | None = None, run_active: Any = None) -> int:
    import anyio

    from flowd.k8s.podlogs import PodLogError, print_run_logs

    try:
        anyio.run(lambda: print_run_logs(kubeconfig=kubeconfig, context=context, namespace=namespace, run_id=run_id, op=args.op,
                                         attempt=args.attempt, follow=args.follow, out=sys.stdout,
                                         run_active=run_active))
    except PodLogError as exc:
        print(f"flowd logs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
