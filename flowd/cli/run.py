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
from flowd.runtime.replay import Restored, restore_run
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
    p.add_argument(
        "--artifacts-store", metavar="DIR|URL", default=None,
        help="where ops' artifacts ($FLOWD_ARTIFACTS) are kept: a folder or s3://bucket/prefix "
        "(default: $FLOWD_ARTIFACTS_STORE, else <state dir>/artifacts; docs/artifacts.md)",
    )
    add_limit_args(p)
    p.set_defaults(func=run)


def artifacts_location(store: SnapshotStore) -> str:
    """Where this run's artifacts go (the executor opens the same store from the environment)."""
    from flowd.artifacts import StoreConfig, open_store

    return open_store(StoreConfig.from_env(), default_folder=store.root / "artifacts").location("")


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
    # the pods' artifact store: the settings file, else --artifacts-store/$FLOWD_ARTIFACTS_* when
    # they name S3 (a folder of this machine is out of the pods' reach)
    url = getattr(args, "artifacts_store", None) or os.environ.get("FLOWD_ARTIFACTS_STORE", "")
    if "artifacts_store" not in config and url.startswith("s3://"):
        config["artifacts_store"] = url
        for key in ("endpoint", "region", "connection"):
            if os.environ.get(f"FLOWD_ARTIFACTS_{key.upper()}"):
                config.setdefault(f"artifacts_{key}", os.environ[f"FLOWD_ARTIFACTS_{key.upper()}"])
    if args.kubeconfig:
        config["kubeconfig"] = args.kubeconfig
    if args.namespace:
        config["namespace"] = args.namespace
    from flowd.k8s.config import Settings

    settings = Settings.from_config(config)  # report bad settings now, before anything runs
    from flowd.k8s.artifacts import ArtifactsError, store_base

    try:
        store_base(settings)
    except ArtifactsError as exc:
        raise ValueError(str(exc)) from None

    def factory(send: Any, run_dir: Path) -> Any:
        from flowd.k8s.drain import draining
        from flowd.k8s.executor import KubernetesExecutor  # seconds to import: only when used

        # exits only once finished pods are deleted or kept as their termination.ttl says
        return draining(KubernetesExecutor(send=send, **config), exit_wait=settings.exit_wait)

    factory.settings = settings  # type: ignore[attr-defined]  # for the cluster check in run()
    return factory


def _pods_store(executor: Any) -> str | None:
    settings = getattr(executor, "settings", None)
    if settings is None or not getattr(settings, "artifacts_store", ""):
        return None
    from flowd.k8s.artifacts import store_base

    return store_base(settings)


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


def _under(value: Any, store: str) -> list[str]:
    """Every string in ``value`` (nested lists/dicts too) that names a place in the store."""
    if isinstance(value, str):
        return [value] if value.startswith(store + "/") else []
    if isinstance(value, dict):
        return [v for item in value.values() for v in _under(item, store)]
    if isinstance(value, list):
        return [v for item in value for v in _under(item, store)]
    return []


def lineage(op: Any, store: str) -> dict[str, Any] | None:
    """Which artifacts the op produced (its outputs in the store) and consumed (its params in the
    store), each consumed one with the run that produced it (the first part of its key)."""
    produced = sorted(set(_under(op.outputs or {}, store)))
    consumed = sorted(set(_under(op.params or {}, store)))
    if not produced and not consumed:
        return None
    return {"produced": produced,
            "consumed": [{"path": p, "run_id": p[len(store) + 1:].partition("/")[0]} for p in consumed]}


def _op_entry(op: Any, store: str | None = None) -> dict[str, Any]:
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
    if store and (found := lineage(op, store)):
        entry["artifacts"] = found
    if getattr(op, "joined", None):
        # lineage of its joins (POLYFLOW §8.4): the runs they selected, in order
        entry["joined"] = op.joined
    if getattr(op, "metrics", None):
        # the last value of each intermediate metric it reported ($FLOWD_METRICS)
        entry["metrics"] = op.metrics
    return entry


def hook_entries(view: RunView, hook_runs: dict[str, RunView] | None = None) -> list[dict[str, Any]]:
    """The hooks the run's ops fired (POLYFLOW §8.3), each with its separate hook run's final
    status and outputs when it ran: ``{op, index, hub_ref, trigger_status, run_id, status,
    message, outputs}``. ``status`` is the hook run's status, or ``skipped`` (conditions false)
    / ``failed`` (could not be resolved: ``message``) when no run was started."""
    out = []
    for h in view.hooks:
        hv = (hook_runs or {}).get(h["run_id"]) if h["status"] == "created" else None
        root = hv.ops.get(hv.pipeline) if hv is not None else None
        out.append({
            "op": h["path"], "index": h["index"], "hub_ref": h["hub_ref"], "trigger_status": h["trigger_status"],
            "run_id": h["run_id"], "status": hv.status if hv is not None else h["status"],
            "message": (hv.message if hv is not None else h.get("message")),
            "outputs": root.outputs if root is not None else None,
        })
    return out


def json_report(view: RunView, hook_runs: dict[str, RunView] | None = None,
                artifacts_store: str | None = None) -> dict[str, Any]:
    """The ``--output json`` object. Times are ISO-8601 strings in UTC (or null). An op that
    reused a cached result also has ``"cache_hit": true`` and ``"cache_source": {run_id, op}``; an
    op with joins has ``"joined": [{run_id, op, uuid}, ...]``, the runs they selected. ``hooks``
    lists the hook runs (see :func:`hook_entries`); they never change ``status``. An op that
    produced or consumed artifacts of ``artifacts_store`` has ``"artifacts": {"produced": [path],
    "consumed": [{"path", "run_id"}]}`` (lineage)."""
    return {
        "pipeline": view.pipeline,
        "status": view.status,
        "run_id": view.run_id,
        "started_at": _iso(view.started_at),
        "finished_at": _iso(view.finished_at),
        "message": view.message,
        "ops": {path: _op_entry(op, artifacts_store) for path, op in view.ops.items() if path},
        "hooks": hook_entries(view, hook_runs),
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
    if args.artifacts_store:
        # the flag is the environment variable for this process: the executor, and op processes
        # that call `flowd` themselves, see the same store
        os.environ["FLOWD_ARTIFACTS_STORE"] = str(Path(args.artifacts_store).absolute()) \
            if "://" not in args.artifacts_store else args.artifacts_store
    try:
        artifacts_location(store)
    except Exception as exc:  # noqa: BLE001 - ArtifactStoreError, or the S3 client refusing its settings
        print(f"flowd run: error: artifacts store: {exc}", file=sys.stderr)
        return 2
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
            restored = restore_run(store, run_id, limits=args.limits)
            if restored is None:
                print(f"flowd resume: run {run_id} has no saved state", file=sys.stderr)
                return 1
            if store.latest(key_of(run_id)) != run_id:
                print(f"flowd resume: a later run of the same file exists ({store.latest(key_of(run_id))}); resuming {run_id} anyway",
                      file=sys.stderr)
            return _continue(args, restored=restored, store=store, executor=None, file_sha="",
                             file=Path(restored.record.file))
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
    restored = restore_run(store, latest, limits=args.limits) if args.resume and latest is not None else None
    try:
        file_sha = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        file_sha = ""  # compile_path says what is wrong with it
    initial: list[Event] = []
    if restored is None:
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
        if executor is None:
            context["artifacts_store"] = artifacts_location(store)
        elif (pods_store := _pods_store(executor)) is not None:
            # pods upload to and download from the S3 store of the executor settings
            # (flowd.k8s.artifacts); without one, artifacts refs fail with a clear message
            context["artifacts_store"] = pods_store
        if args.no_cache:
            context["cache"] = "off"
        initial.append(Submit(run_id=run_id, pipeline=result.op, time=now, seed=seed, context=context))
        return _drive(args, engine=engine, record=record, store=store, executor=executor, initial=initial,
                      pipeline=result.op.name)
    return _continue(args, restored=restored, store=store, executor=executor, file_sha=file_sha, file=file)


def _continue(args: argparse.Namespace, *, restored: Restored, store: SnapshotStore, executor: Any, file_sha: str,
              file: Path) -> int:
    """Resume a saved run (its snapshot plus journal replayed): after a crash, take over what
    was in flight; after a failure or a stop, send the engine ``Resume`` so what did not
    succeed runs again."""
    record, engine = restored.record, restored.engine
    run_id = record.run_id
    if restored.torn:
        print(f"flowd run: the journal of run {run_id} ended in a torn write (flowd was killed while writing it); "
              "resuming from the last complete batch", file=sys.stderr)
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
    from flowd.cli.runlogs import streaming_logs

    run_id = record.run_id
    run_dir = store.run_dir(run_id)
    out = sys.stdout if args.output == "text" else sys.stderr
    settings = getattr(executor, "settings", None)
    if settings is not None:
        # `flowd logs RUN` reads a run on pods through the pod log API: say where they are
        from flowd.runtime.logs import write_pod_location

        write_pod_location(run_dir, namespace=settings.namespace, kubeconfig=settings.kubeconfig,
                           context=settings.context)
    if args.output == "text":
        where = f"the pods of namespace {settings.namespace}" if settings is not None else run_dir / "attempts"
        state = "" if args.state_dir is None else f" --state-dir {args.state_dir}"
        print(f"run {run_id}: logs in {where} (flowd logs {run_id}{state})", file=out, flush=True)
    started = time.monotonic()
    with make_progress(out, pipeline=pipeline) as progress:
        driver = Driver(engine, record=record, store=store, progress=progress, grace=args.stop_grace,
                        approve=args.approve, executor=executor, max_procs=args.max_procs or None,
                        max_outputs_bytes=args.limits.max_outputs_bytes, connections=_local_connections(args, store))
        with streaming_logs(run_dir, progress, enabled=getattr(args, "logs", False), settings=settings):
            view = anyio.run(driver.run, initial)
    hook_runs = {h["run_id"]: engine.view(h["run_id"]) for h in view.hooks if h["run_id"] in engine.runs}
    if args.output == "json":
        report = json_report(view, hook_runs, _pods_store(executor) or artifacts_location(store))
        if report["message"] is None and view.status == "stopped" and driver.stall_message:
            report["message"] = driver.stall_message  # stopped by flowd: say what each op waited for
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        for h in hook_entries(view, hook_runs):
            print(f"hook {h['index']} ({h['hub_ref']}) of {h['op'] or 'the pipeline'} ({h['trigger_status']}): "
                  f"{h['status']}" + (f" (run {h['run_id']})" if h["status"] not in ("skipped",) else "")
                  + (f": {h['message']}" if h["message"] else ""), flush=True)
        print(summary(view, elapsed=time.monotonic() - started), flush=True)
        state = "" if args.state_dir is None else f" --state-dir {args.state_dir}"
        # a hint, not a result: stderr, so the summary stays the last line of stdout; after a
        # blank line, so on a terminal it does not read as a row of the summary table
        print(f"\nnext: flowd logs {run_id} [OP]{state}   |   flowd ui{state}", file=sys.stderr, flush=True)
    return 0 if view.status == "succeeded" else 1

