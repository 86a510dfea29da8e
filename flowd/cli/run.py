"""``flowd run FILE``: compile a Polyaxonfile and run it to the end on this machine.

Job and service ops run as local subprocesses (flowd.runtime.executor); the engine decides
everything else. See docs/local-runtime.md for the run id, ``--resume`` and the JSON report.
Exit codes: 0 the pipeline succeeded, 1 any other final status (or the run could not be
carried out), 2 invalid spec or usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import msgspec

from flowd.engine import RunView, Submit
from flowd.runtime.driver import Driver
from flowd.runtime.processes import kill_leftovers
from flowd.runtime.store import (
    RunRecord,
    SnapshotStore,
    StoreError,
    default_state_dir,
    derive_run_id,
)

__all__ = ["add_parser", "run", "json_report"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a pipeline locally",
        description="Run a Polyaxonfile on this machine: each job runs its container command as a "
        "local process (the image is not pulled).",
    )
    p.add_argument("file", metavar="FILE", help="the Polyaxonfile (YAML) to run")
    p.add_argument(
        "--param", "-P", action="append", default=[], metavar="NAME=VALUE",
        help="set an input of the top-level component (repeatable)",
    )
    p.add_argument("--hub", metavar="DIR", default=None, help="folder of hub components for hubRef (default: $FLOWD_HUB)")
    p.add_argument("--no-cache", action="store_true",
                   help="run every op even if the state dir's cache holds its result (POLYFLOW §5.10)")
    p.add_argument("--presets", metavar="DIR", default=None,
                   help="folder of named presets for `presets: [name]` (default: $FLOWD_PRESETS)")
    p.add_argument(
        "--state-dir", metavar="DIR", default=None,
        help="where run state, logs and work dirs live (default: $FLOWD_STATE_DIR, else $XDG_CACHE_HOME/flowd/state)",
    )
    p.add_argument("--output", "-o", choices=("text", "json"), default="text", help="text (progress) or json (one report on stdout)")
    p.add_argument("--resume", action="store_true", help="continue the saved run of this FILE and params instead of starting afresh")
    p.add_argument(
        "--approve", action="append", default=[], metavar="OP",
        help="approve the op at this path (isApproved: false) in advance (repeatable)",
    )
    p.add_argument(
        "--stop-grace", metavar="SECONDS", type=float, default=5.0,
        help="time a stopped op gets between SIGTERM and SIGKILL (default 5)",
    )
    p.add_argument(
        "--max-procs", metavar="N", type=int, default=DEFAULT_MAX_PROCS,
        help=f"local executor: at most N job processes at once, the others wait (default {DEFAULT_MAX_PROCS}, "
        "4 per CPU; 0 = no limit; services do not count)",
    )
    p.add_argument(
        "--executor", choices=("local", "k8s"), default="local",
        help="local: each job is a subprocess of this machine (default); k8s: each job is a pod "
        "(needs a cluster; see --kubeconfig, --namespace, --executor-config)",
    )
    p.add_argument("--kubeconfig", metavar="FILE", default=None, help="with --executor k8s (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--namespace", metavar="NS", default=None, help="with --executor k8s: namespace of ops that set none")
    p.add_argument(
        "--executor-config", metavar="JSON|FILE", default=None,
        help="with --executor k8s: executor settings (docs/kubernetes.md) as a JSON object or a JSON/TOML file",
    )
    p.set_defaults(func=run)


# a wide fan-out without `concurrency` would otherwise start every process at once
DEFAULT_MAX_PROCS = max(8, 4 * (os.cpu_count() or 1))


def executor_factory(args: argparse.Namespace) -> Any:
    """None for the local executor (the driver's default), else a factory for the driver."""
    if args.executor == "local":
        return None
    config: dict[str, Any] = {}
    if args.executor_config:
        text = args.executor_config
        path = Path(text)
        if not text.lstrip().startswith("{") and path.is_file():
            text = path.read_text()
            if path.suffix == ".toml":
                import tomllib

                config.update(tomllib.loads(text))
                text = ""
        if text:
            config.update(json.loads(text))
    if args.kubeconfig:
        config["kubeconfig"] = args.kubeconfig
    if args.namespace:
        config["namespace"] = args.namespace
    from flowd.k8s.config import Settings
    from flowd.k8s.executor import KubernetesExecutor

    Settings.from_config(config)  # report bad settings now, before anything runs
    return lambda send, run_dir: KubernetesExecutor(send=send, **config)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


def _op_entry(op: Any) -> dict[str, Any]:
    entry = {
        "status": op.status,
        "attempts": op.attempts,
        "outputs": op.outputs,
        "started_at": _iso(op.started_at),
        "finished_at": _iso(op.finished_at),
        "message": op.message,
    }
    if getattr(op, "reason", None) == "CacheHit":
        # reused the outputs of an earlier run's op (POLYFLOW §5.10): say whose
        source = (op.message or "").removeprefix("cache hit: outputs of ")
        run_id, _, path = source.partition("/")
        entry.update(cache_hit=True, cache_source={"run_id": run_id, "op": path})
    return entry


def json_report(view: RunView) -> dict[str, Any]:
    """The ``--output json`` object. Times are ISO-8601 strings in UTC (or null). An op that
    reused a cached result also has ``"cache_hit": true`` and ``"cache_source": {run_id, op}``."""
    return {
        "pipeline": view.pipeline,
        "status": view.status,
        "run_id": view.run_id,
        "started_at": _iso(view.started_at),
        "finished_at": _iso(view.finished_at),
        "message": view.message,
        "ops": {path: _op_entry(op) for path, op in view.ops.items() if path},
    }


def _print_diagnostics(result: Any) -> None:
    for diag in [*result.errors, *result.warnings]:
        text = diag.format() if callable(getattr(diag, "format", None)) else str(diag)
        print(text, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from flowd.cli.check import parse_params

    file = Path(args.file)
    params = parse_params(args.param)
    if isinstance(params, str):
        print(f"flowd run: error: {params}", file=sys.stderr)
        return 2
    args.hub = args.hub if args.hub is not None else os.environ.get("FLOWD_HUB") or None
    if args.hub is not None and not os.path.isdir(args.hub):
        print(f"flowd run: error: --hub {args.hub!r} is not a directory", file=sys.stderr)
        return 2
    if args.max_procs < 0:
        print("flowd run: error: --max-procs must be 0 (no limit) or more", file=sys.stderr)
        return 2
    try:
        executor = executor_factory(args)
    except (OSError, ValueError, msgspec.ValidationError) as exc:  # json and toml errors are ValueErrors
        print(f"flowd run: error: executor settings: {exc}", file=sys.stderr)
        return 2
    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    run_id = derive_run_id(file, params)
    errors: list[Exception] = []
    try:
        with store.lock(run_id):
            return _run_locked(args, file=file, params=params, store=store, run_id=run_id, executor=executor)
    except* StoreError as group:  # may come out of the driver's task group
        errors.extend(group.exceptions)
    print(f"flowd run: {errors[0]}", file=sys.stderr)
    return 1


def _run_locked(args: argparse.Namespace, *, file: Path, params: dict[str, str], store: SnapshotStore, run_id: str,
                executor: Any) -> int:
    from flowd.cli.progress import make_progress, summary
    from flowd.engine import Engine
    from flowd.spec import compile_path

    # a flowd killed earlier (kill -9) may have left op processes of this run running: they
    # can be neither re-attached nor left to write into a resumed or fresh run
    leftovers = kill_leftovers(store.run_dir(run_id))
    if leftovers:
        print(f"flowd run: killed {len(leftovers)} process(es) left running by an earlier flowd for this run", file=sys.stderr)
    record = store.load(run_id) if args.resume else None
    try:
        file_sha = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        file_sha = ""  # compile_path says what is wrong with it
    initial: list[Submit] = []
    if record is None:
        result = compile_path(file, params=params or None, hub=args.hub, presets=args.presets)
        _print_diagnostics(result)
        if not result.valid or result.op is None:
            return 2
        if result.op.events:
            refs = ", ".join(str(e.get("ref")) for e in result.op.events if isinstance(e, dict))
            print(f"flowd run: error: {file} is event-triggered (top-level `events` on {refs}): it must start when "
                  "those runs emit their events, which is the daemon's job; submit it with `flowd submit` to "
                  "`flowd serve`, or remove `events` to run it now", file=sys.stderr)
            return 2
        if args.resume:
            print(f"flowd run: no saved state for this run in {store.root}; starting a fresh run", file=sys.stderr)
        store.discard(run_id)
        engine = Engine()
        record = RunRecord(run_id=run_id, file=str(file.resolve()), file_sha256=file_sha, params=params, engine=b"")
        # the run id seeds the run's random choices: the same run draws the same values
        seed = int(run_id.rsplit("-", 1)[-1][:8], 16)
        # globals.context_path/artifacts_path point into this run's directory of the state dir
        context_path = str(store.run_dir(run_id).resolve())
        context = {"context_path": context_path, "artifacts_path": f"{context_path}/artifacts",
                   "owner_name": os.environ.get("USER") or "flowd"}
        if args.no_cache:
            context["cache"] = "off"
        initial.append(Submit(run_id=run_id, pipeline=result.op, time=time.time(), seed=seed, context=context))
        pipeline = result.op.name
    else:
        try:
            engine = Engine.restore(record.engine)
        except (ValueError, msgspec.DecodeError) as exc:
            raise StoreError(f"cannot resume run {run_id}: {exc}; run without --resume to start afresh") from exc
        if file_sha and file_sha != record.file_sha256:
            print(f"flowd run: {file} changed since the run started; resuming the run as it was submitted", file=sys.stderr)
        pipeline = engine.view(run_id).pipeline
        if record.done is not None:
            print(f"flowd run: this run already finished ({record.done})", file=sys.stderr)

    started = time.monotonic()
    with make_progress(sys.stdout if args.output == "text" else sys.stderr, pipeline=pipeline) as progress:
        driver = Driver(engine, record=record, store=store, progress=progress, grace=args.stop_grace,
                        approve=args.approve, executor=executor, max_procs=args.max_procs or None)
        view = anyio.run(driver.run, initial)
    if args.output == "json":
        sys.stdout.write(json.dumps(json_report(view), indent=2) + "\n")
    else:
        print(summary(view, elapsed=time.monotonic() - started), flush=True)
    return 0 if view.status == "succeeded" else 1
