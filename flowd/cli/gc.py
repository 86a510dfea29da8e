"""``flowd gc``: remove local runs older than the retention (state, work dir and logs).

The artifacts of removed runs go too (the store of ``--artifacts-store`` / ``$FLOWD_ARTIFACTS_STORE``,
else ``<state dir>/artifacts``), but never while a kept run or an entry of the result cache still
refers to them (flowd.artifacts.gc).

Retention: ``--keep-days`` (default ``$FLOWD_RETENTION_DAYS``, else 14) by creation time, and
``--keep-last N`` runs of each pipeline are always kept (default 1: the latest, so ``--resume``
and ``flowd logs`` of it keep working). Runs a flowd process is carrying out are never removed.
``--dry-run`` lists what would go. Exit 0, 2 usage.

``--daemon``: the daemons' finished runs instead, by the time they finished, with the same
retention flags: their summaries in the compacted ``status`` topic get a tombstone (what
``flowd runs --daemon``, ``flowd status`` and ``flowd ui --daemon`` read), and compaction drops
them. With an artifact store (``--artifacts-store``, else the daemons' ``artifacts_store`` from ``--config`` or
``$FLOWD_ARTIFACTS_STORE``),
their artifacts go too, never while a kept run's summary or a ``<prefix>cache`` entry names them.
The ``events`` topic keeps its own retention (Kafka's ``retention.ms``); pods go by their
``ttl``; a daemon's local state dir is not touched. Exit 1 when Kafka fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("gc", help="remove local runs older than the retention",
                              description="Remove local runs (state, work dir, logs) older than the retention.")
    p.add_argument("--keep-days", type=float, default=None, metavar="DAYS",
                   help="keep runs created within this many days (default: $FLOWD_RETENTION_DAYS, else 14)")
    p.add_argument("--keep-last", type=int, default=1, metavar="N", help="always keep the N latest runs of each pipeline (default 1)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--state-dir", metavar="DIR", default=None, help="the state dir (default: $FLOWD_STATE_DIR, ...)")
    p.add_argument("--artifacts-store", metavar="DIR|URL", default=None,
                   help="the artifact store (default: $FLOWD_ARTIFACTS_STORE, else <state dir>/artifacts)")
    p.add_argument("--daemon", action="store_true",
                   help="forget the daemons' finished runs (tombstones in the compacted status topic) instead")
    from flowd.cli.bus import add_bus_args

    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.runtime.history import list_runs
    from flowd.runtime.store import SnapshotStore, default_state_dir

    days = args.keep_days
    if days is None:
        try:
            days = float(os.environ.get("FLOWD_RETENTION_DAYS") or 14)
        except ValueError:
            print("flowd gc: error: $FLOWD_RETENTION_DAYS is not a number", file=sys.stderr)
            return 2
    if days < 0 or args.keep_last < 0:
        print("flowd gc: error: --keep-days and --keep-last must be 0 or more", file=sys.stderr)
        return 2
    cutoff = time.time() - days * 86400
    if args.daemon:
        return _daemon_gc(args, cutoff=cutoff, days=days)
    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    seen: dict[str, int] = {}
    removed = 0
    going: set[str] = set()
    for summary in list_runs(store):  # newest first
        seen[summary.pipeline] = seen.get(summary.pipeline, 0) + 1
        if summary.active or seen[summary.pipeline] <= args.keep_last or (summary.created_at or 0) >= cutoff:
            continue
        print(("would remove " if args.dry_run else "removed ") + summary.run_id)
        going.add(summary.run_id)
        if not args.dry_run:
            store.discard(summary.run_id)
        removed += 1
    print(f"{removed} run(s) {'to remove' if args.dry_run else 'removed'} (retention {days:g} days, "
          f"keeping the last {args.keep_last} of each pipeline)", file=sys.stderr)
    return _collect_artifacts(args, store, going)


def _collect_artifacts(args: argparse.Namespace, store: Any, going: set[str]) -> int:
    import anyio

    from flowd.artifacts import ArtifactStoreError, StoreConfig, open_store
    from flowd.artifacts.gc import collectable, references

    try:
        artifacts = open_store(StoreConfig.from_env(url=args.artifacts_store), default_folder=store.root / "artifacts")
        stored = anyio.run(artifacts.children, "")
    except ArtifactStoreError as exc:
        print(f"flowd gc: error: artifacts store: {exc}", file=sys.stderr)
        return 1
    if not stored:
        return 0
    location = artifacts.location("")
    kept = set(store.run_ids()) - going
    referenced: set[str] = set()
    # a kept run's state is its snapshot plus its journal (outputs of a running one may be only there)
    blobs = [p for r in kept for p in (store.run_dir(r) / "snapshot.bin", store.journal_path(r))]
    blobs += sorted((store.root / "cache").glob("*.json"))
    for path in blobs:
        try:
            referenced |= references(path.read_bytes(), location, stored)
        except OSError:
            continue
    held = sorted(r for r in stored if r in going and r in referenced)
    for run_id in held:
        print(f"kept artifacts of {run_id}: a kept run or a cache entry refers to them", file=sys.stderr)
    doomed = collectable(stored, going=going, kept=kept, referenced=referenced)
    for run_id in doomed:
        if store.is_active(run_id):
            continue
        print(("would remove artifacts of " if args.dry_run else "removed artifacts of ") + run_id)
        if not args.dry_run:
            try:
                anyio.run(artifacts.delete, run_id)
            except ArtifactStoreError as exc:
                print(f"flowd gc: error: {exc}", file=sys.stderr)
                return 1
    return 0


def _daemon_gc(args: argparse.Namespace, *, cutoff: float, days: float) -> int:
    import anyio

    from flowd.cli.bus import bus_config
    from flowd.daemon.client import forget_runs, run_summaries
    from flowd.daemon.kafka import BusError

    config = bus_config(args)
    try:
        summaries = anyio.run(lambda: run_summaries(config))
        seen: dict[str, int] = {}
        gone = []
        for s in sorted(summaries.values(), key=lambda s: s.finished_at or s.time, reverse=True):
            seen[s.pipeline] = seen.get(s.pipeline, 0) + 1
            if s.finished_at is None or seen[s.pipeline] <= args.keep_last or s.finished_at >= cutoff:
                continue  # running, among the last N of its pipeline, or within the retention
            gone.append(s.run_id)
        # the artifacts first: a crash after them leaves the summaries, and the next gc forgets
        # those runs (their artifacts then count as orphans); never the other way round
        code = _daemon_artifacts(args, config, summaries, set(gone), cutoff=cutoff)
        if code:
            return code
        if not args.dry_run:
            anyio.run(forget_runs, config, gone)
        for run_id in gone:  # after the tombstones are written: a refused write forgot nothing
            print(("would forget " if args.dry_run else "forgot ") + run_id)
    except BusError as exc:
        print(f"flowd gc: {exc}", file=sys.stderr)
        return 1
    print(f"{len(gone)} daemon run(s) {'to forget' if args.dry_run else 'forgotten'} (retention {days:g} days, "
          f"keeping the last {args.keep_last} of each pipeline)", file=sys.stderr)
    return 0


def _daemon_artifacts(args: argparse.Namespace, config: Any, summaries: dict[str, Any], gone: set[str], *,
                      cutoff: float) -> int:
    """The artifacts of the daemons' runs (``--artifacts-store`` / ``$FLOWD_ARTIFACTS_STORE``, the
    store the daemons were given; nothing without one): a run's go when the run is forgotten
    now, or was forgotten earlier (no summary) and its newest object is older than the
    retention, and neither a kept run's summary (its ops' outputs) nor a live entry of the
    ``<prefix>cache`` topic names ``<store>/<run id>/``. Running runs have a summary: kept."""
    import anyio
    import msgspec

    from flowd.artifacts import ArtifactStoreError, StoreConfig, open_store
    from flowd.artifacts.gc import collectable, references
    from flowd.daemon.client import latest_values
    from flowd.daemon.kafka import BusError

    # --artifacts-store, else the daemons' setting (--config file, $FLOWD_ARTIFACTS_*)
    settings = StoreConfig(url=args.artifacts_store or config.artifacts_store, endpoint=config.artifacts_endpoint,
                           region=config.artifacts_region)
    if not settings.url:
        return 0
    try:
        artifacts = open_store(settings, default_folder=Path("."))
        stored = anyio.run(artifacts.children, "")
    except ArtifactStoreError as exc:
        print(f"flowd gc: error: artifacts store: {exc}", file=sys.stderr)
        return 1
    if not stored:
        return 0
    location = artifacts.location("")
    kept = set(summaries) - gone
    referenced: set[str] = set()
    hidden = sorted(r for r in kept if summaries[r].ops_omitted)
    if hidden:
        # a kept run whose summary leaves out its ops (their params and outputs) may refer to any
        # run's artifacts: deleting any could break it, so none go until it is forgotten itself
        print(f"flowd gc: warning: kept all artifacts: run {hidden[0]}"
              f"{f' (and {len(hidden) - 1} more)' if len(hidden) > 1 else ''} has too many ops for its summary, "
              "so the artifacts it refers to cannot be told apart", file=sys.stderr)
        return 0
    for run_id in kept:
        # the summary holds every op's resolved params (a consumer's refs) and outputs (a cache
        # hit's paths): a byte search finds each <store>/<run id>/ they name
        referenced |= references(msgspec.json.encode(summaries[run_id]), location, stored)
    try:
        cache = anyio.run(latest_values, config, config.topics.cache)
    except BusError as exc:
        if "does not exist" not in str(exc):
            raise
        cache = {}  # a deployment with the cache off
    for value in cache.values():
        referenced |= references(value, location, stored)
    for run_id in sorted(r for r in stored if r in gone and r in referenced):
        print(f"kept artifacts of {run_id}: a kept run or a cache entry refers to them", file=sys.stderr)
    async def sweep() -> None:
        doomed = []
        for run_id in collectable(stored, going=gone, kept=kept, referenced=referenced):
            if run_id not in gone:  # an orphan: only once its files are past the retention too
                objects = await artifacts.list(run_id)
                if not objects or max(o.modified for o in objects) >= cutoff:
                    continue
            doomed.append(run_id)
        for run_id in doomed:
            if not args.dry_run:
                await artifacts.delete(run_id)
            print(("would remove artifacts of " if args.dry_run else "removed artifacts of ") + run_id)

    try:
        anyio.run(sweep)
    except ArtifactStoreError as exc:
        print(f"flowd gc: error: {exc}", file=sys.stderr)
        return 1
    return 0
