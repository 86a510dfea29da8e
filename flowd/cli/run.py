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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

from flowd.cli._limits import add_limit_args, limits_of
from flowd.engine import Event, Resume, RunView, Submit
from flowd.runtime.driver import Driver
from flowd.runtime.processes import kill_leftovers
from flowd.runtime.store import (
    RunRecord,
    SnapshotStore,
    StoreError,
    default_state_dir,
    derive_run_id,
    key_of,
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
    p.add_argument("--resume", action="store_true",
                   help="continue the latest run of this FILE and params instead of starting a new one: after a "
                   "crash, what was in flight; after a failure or a stop, what did not succeed")
    p.add_argument("--logs", action="store_true", help="print the jobs' stdout/stderr as they run, each line prefixed by its op path")
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
    p.add_argument("--kubeconfig", metavar="FILE", default=None,
                   help="with --executor k8s (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--namespace", metavar="NS", default=None, help="with --executor k8s: namespace of ops that set none")
    p.add_argument(
        "--executor-config", metavar="JSON|FILE", default=None,
        help="executor settings (docs/kubernetes.md) as a JSON object or a JSON/TOML file; the local executor "
        "reads their `connections` catalog too (docs/local-runtime.md)",
    )
    p.add_argument(
        "--secrets-dir", metavar="DIR", default=None,
        help="local executor: the connections' secrets and config maps, a folder per resource and a file per key "
        "(default: $FLOWD_SECRETS_DIR, else ~/.config/flowd/secrets)",
    )
    add_limit_args(p)
    p.set_defaults(func=run)


# a wide fan-out without `concurrency` would otherwise start every process at once
DEFAULT_MAX_PROCS = max(8, 4 * (os.cpu_count() or 1))


def executor_factory(args: argparse.Namespace) -> Any:
    """None for the local executor (the driver's default), else a factory for the driver. The
    settings are checked for both (one file serves both executors); the local executor keeps
    their connection catalog in ``args.connection_catalog``."""
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
    if args.executor == "local":
        from flowd.k8s.config import Settings as _Settings

        args.connection_catalog = _Settings.from_config(config).connections if config else {}
        return None
    if args.kubeconfig:
        config["kubeconfig"] = args.kubeconfig
    if args.namespace:
        config["namespace"] = args.namespace
    from flowd.k8s.config import Settings

    settings = Settings.from_config(config)  # report bad settings now, before anything runs

    def factory(send: Any, run_dir: Path) -> Any:
        from flowd.k8s.drain import draining
        from flowd.k8s.executor import KubernetesExecutor  # seconds to import: only when used

        # exits only once finished pods are deleted or kept as their termination.ttl says
        return draining(KubernetesExecutor(send=send, **config), exit_wait=settings.exit_wait)

    factory.settings = settings  # type: ignore[attr-defined]  # for the cluster check in run()
    return factory


def _local_connections(args: argparse.Namespace, store: SnapshotStore) -> Any:
    """The local executor's connection catalog and secrets folder (flowd.runtime.connections)."""
    from flowd.initsteps.envsources import secrets_dir_default
    from flowd.runtime.connections import LocalConnections

    secrets = getattr(args, "secrets_dir", None) or os.environ.get("FLOWD_SECRETS_DIR") or secrets_dir_default()
    return LocalConnections(getattr(args, "connection_catalog", None) or {}, secrets_dir=Path(secrets),
                            volumes_dir=store.root / "volumes")


def _cluster_problem(executor: Any) -> str | None:
    """None when the k8s executor's cluster answers, else one line saying why not (fail fast:
    otherwise the ops would wait in ``queued`` while the watches retry)."""
    from flowd.k8s.preflight import ClusterUnavailable, check_cluster

    try:
        anyio.run(check_cluster, executor.settings)
    except ClusterUnavailable as exc:
        return str(exc)
    return None


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


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
    limits = limits_of(args)
    if isinstance(limits, str):
        print(f"flowd run: error: {limits}", file=sys.stderr)
        return 2
    args.limits = limits
    if args.max_procs < 0:
        print("flowd run: error: --max-procs must be 0 (no limit) or more", file=sys.stderr)
        return 2
    try:
        executor = executor_factory(args)
    except (OSError, ValueError, msgspec.ValidationError) as exc:  # json and toml errors are ValueErrors
        print(f"flowd run: error: executor settings: {exc}", file=sys.stderr)
        return 2
    if executor is not None and (problem := _cluster_problem(executor)):
        print(f"flowd run: error: {problem}", file=sys.stderr)
        return 1
    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    key = derive_run_id(file, params)
    errors: list[Exception] = []
    try:
        with store.lock(key):
            return _run_locked(args, file=file, params=params, store=store, key=key, executor=executor)
    except* StoreError as group:  # may come out of the driver's task group
        errors.extend(group.exceptions)
    print(f"flowd run: {errors[0]}", file=sys.stderr)
    return 1


def resume_local(args: argparse.Namespace, run_ref: str) -> int:
    """``flowd resume RUN --state-dir D``: continue a local run by its id (see ``_run_locked``)."""
    if getattr(args, "limits", None) is None:  # `flowd resume` has no --limit: the defaults
        from flowd.spec.limits import Limits

        args.limits = Limits()
    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    run_id = store.resolve(run_ref)
    if run_id is None:
        print(f"flowd resume: no run {run_ref!r} in {store.root} (flowd runs lists them)", file=sys.stderr)
        return 1
    errors: list[Exception] = []
    try:
        with store.lock(key_of(run_id)):
            record = store.load(run_id)
            if record is None:
                print(f"flowd resume: run {run_id} has no saved state", file=sys.stderr)
                return 1
            if store.latest(key_of(run_id)) != run_id:
                print(f"flowd resume: a later run of the same file exists ({store.latest(key_of(run_id))}); resuming {run_id} anyway",
                      file=sys.stderr)
            return _continue(args, record=record, store=store, executor=None, file_sha="", file=Path(record.file))
    except* StoreError as group:
        errors.extend(group.exceptions)
    print(f"flowd resume: {errors[0]}", file=sys.stderr)
    return 1


def _run_locked(args: argparse.Namespace, *, file: Path, params: dict[str, str], store: SnapshotStore, key: str,
                executor: Any) -> int:
    from flowd.engine import Engine
    from flowd.spec import compile_path

    latest = store.latest(key)
    if latest is not None:
        # a flowd killed earlier (kill -9) may have left op processes of this run running: they
        # can be neither re-attached nor left to write into a resumed or fresh run
        leftovers = kill_leftovers(store.run_dir(latest))
        if leftovers:
            print(f"flowd run: killed {len(leftovers)} process(es) left running by an earlier flowd for this run", file=sys.stderr)
    record = store.load(latest) if args.resume and latest is not None else None
    try:
        file_sha = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        file_sha = ""  # compile_path says what is wrong with it
    initial: list[Event] = []
    if record is None:
        result = compile_path(file, params=params or None, hub=args.hub, limits=args.limits, presets=args.presets)
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
        run_id = store.new_run_id(key)  # earlier runs of the key stay, with their logs
        engine = Engine(args.limits)
        now = time.time()
        record = RunRecord(run_id=run_id, file=str(file.resolve()), file_sha256=file_sha, params=params, engine=b"",
                           key=key, pipeline=result.op.name, created_at=now)
        # the key (file and params) seeds the run's random choices: a re-run draws the same values
        seed = int(key.rsplit("-", 1)[-1][:8], 16)
        # globals.context_path/artifacts_path point into this run's directory of the state dir
        context_path = str(store.run_dir(run_id).resolve())
        context = {"context_path": context_path, "artifacts_path": f"{context_path}/artifacts",
                   "owner_name": os.environ.get("USER") or "flowd"}
        if args.no_cache:
            context["cache"] = "off"
        initial.append(Submit(run_id=run_id, pipeline=result.op, time=now, seed=seed, context=context))
        return _drive(args, engine=engine, record=record, store=store, executor=executor, initial=initial,
                      pipeline=result.op.name)
    return _continue(args, record=record, store=store, executor=executor, file_sha=file_sha, file=file)


def _continue(args: argparse.Namespace, *, record: RunRecord, store: SnapshotStore, executor: Any, file_sha: str,
              file: Path) -> int:
    """Resume a saved run: after a crash, take over what was in flight; after a failure or a
    stop, send the engine ``Resume`` so what did not succeed runs again."""
    from flowd.engine import Engine

    run_id = record.run_id
    try:
        engine = Engine.restore(record.engine, limits=args.limits)
    except (ValueError, msgspec.DecodeError) as exc:
        raise StoreError(f"cannot resume run {run_id}: {exc}; run without --resume to start afresh") from exc
    if file_sha and file_sha != record.file_sha256:
        print(f"flowd run: {file} changed since the run started; resuming the run as it was submitted", file=sys.stderr)
    pipeline = engine.view(run_id).pipeline
    initial: list[Event] = []
    if record.done == "succeeded":
        print(f"flowd run: run {run_id} already succeeded; nothing to resume", file=sys.stderr)
    elif record.done is not None:
        print(f"flowd run: run {run_id} ended {record.done}; running again what did not succeed", file=sys.stderr)
        record.done = None
        initial.append(Resume(run_id=run_id, time=time.time()))
    return _drive(args, engine=engine, record=record, store=store, executor=executor, initial=initial, pipeline=pipeline)


def _drive(args: argparse.Namespace, *, engine: Any, record: RunRecord, store: SnapshotStore, executor: Any,
           initial: list[Event], pipeline: str) -> int:
    from flowd.cli.progress import make_progress, summary

    run_id = record.run_id
    run_dir = store.run_dir(run_id)
    out = sys.stdout if args.output == "text" else sys.stderr
    if args.output == "text":
        print(f"run {run_id}: logs in {run_dir / 'attempts'}", file=out, flush=True)
    started = time.monotonic()
    with make_progress(out, pipeline=pipeline) as progress:
        driver = Driver(engine, record=record, store=store, progress=progress, grace=args.stop_grace,
                        approve=args.approve, executor=executor, max_procs=args.max_procs or None,
                        max_outputs_bytes=args.limits.max_outputs_bytes, connections=_local_connections(args, store))
        with _streaming_logs(run_dir, progress, enabled=getattr(args, "logs", False)):
            view = anyio.run(driver.run, initial)
    if args.output == "json":
        sys.stdout.write(json.dumps(json_report(view), indent=2) + "\n")
    else:
        print(summary(view, elapsed=time.monotonic() - started), flush=True)
        state = "" if args.state_dir is None else f" --state-dir {args.state_dir}"
        # a hint, not a result: stderr, so the summary stays the last line of stdout
        print(f"next: flowd logs {run_id} [OP]{state}   |   flowd ui{state}", file=sys.stderr, flush=True)
    return 0 if view.status == "succeeded" else 1


class _streaming_logs:
    """``--logs``: a thread that prints the jobs' new log lines, prefixed by op path, through the
    progress display (so a live view stays intact) until the run ends."""

    def __init__(self, run_dir: Path, progress: Any, *, enabled: bool) -> None:
        import threading

        from flowd.runtime.logs import LogFollower

        self.enabled = enabled
        self.follower = LogFollower(run_dir)
        self.progress = progress
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="flowd-logs", daemon=True)

    def _flush(self, *, final: bool = False) -> None:
        for path, attempt, stream, line in self.follower.poll(final=final):
            label = path if attempt <= 1 else f"{path}#{attempt}"
            self.progress.note(f"[{label}{' stderr' if stream == 'stderr' else ''}] {line}")

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self._flush()

    def __enter__(self) -> _streaming_logs:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self._flush(final=True)
