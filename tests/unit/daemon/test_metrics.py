"""The daemon's metrics registry as a scrape shows it (prometheus_client's own text format)."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import flowd
from flowd.daemon import wire
from flowd.daemon.metrics import STATE_HELP, Metrics, phases
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.engine import DONE, STATUSES, StartOp
from flowd.spec import compile_text
from flowd.spec.compiled import Op

ONE_OP = """
version: 1.1
kind: component
name: one
run:
  kind: dag
  operations:
    - {name: a, component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
"""


def one_op() -> Op:
    result = compile_text(ONE_OP)
    assert result.op is not None, result.errors
    return result.op


def scrape(m: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_a_revoked_partition_stops_reporting_its_series() -> None:
    m = Metrics()
    for p in (0, 1):
        m.lag.labels(str(p)).set(5)
        m.snapshot_bytes.labels(str(p)).set(100)
        m.recovery_seconds.labels(str(p)).set(0.5)
    m.forget_partition(1)
    m.forget_partition(7)  # never owned: nothing to drop, no error
    got = scrape(m)
    for name in ("flowd_consumer_lag", "flowd_snapshot_bytes", "flowd_recovery_duration_seconds"):
        assert [labels["partition"] for labels, _ in got[name]] == ["0"], name


def test_outcome_and_reason_series_exist_at_zero_before_the_first_event() -> None:
    got = scrape(Metrics())
    outcomes = {labels["outcome"]: v for labels, v in got["flowd_transactions_total"]}
    assert outcomes == {"committed": 0.0, "aborted": 0.0, "failed": 0.0}
    reasons = {labels["reason"]: v for labels, v in got["flowd_events_dead_lettered_total"]}
    assert reasons == {"undecodable": 0.0, "invalid": 0.0, "rejected": 0.0}


def test_process_gc_and_build_info_are_exposed() -> None:
    got = scrape(Metrics())
    assert "process_resident_memory_bytes" in got
    assert "python_gc_collections_total" in got
    assert got["flowd_build_info"] == [({"version": flowd.__version__}, 1.0)]


def test_scrape_time_gauges_have_real_help_texts() -> None:
    m = Metrics()
    m.add_state_collector(lambda: [("flowd_runs", {"running": 2}), ("flowd_partitions_owned", 3)])
    text = generate_latest(m.registry).decode()
    assert f"# HELP flowd_runs {STATE_HELP['flowd_runs']}" in text
    assert f"# HELP flowd_partitions_owned {STATE_HELP['flowd_partitions_owned']}" in text


def test_flowd_version_prints_the_package_version() -> None:
    out = subprocess.run([sys.executable, "-m", "flowd", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"flowd {flowd.__version__}"
    assert flowd.__version__ != "0+unknown"


def test_every_phase_is_counted_from_zero() -> None:
    state = PartitionState(0, compiler=lambda msg: (None, []))
    state.apply(Record("t", 0, 0, b"r", wire.encode(wire.Submission(run_id="r", time=1.0, pipeline=one_op())), 1.0),
                Outcome())
    runs, ops = phases([state])
    assert set(runs) == set(ops) == set(STATUSES)
    assert runs["running"] == 1 and runs["failed"] == 0
    assert sum(ops.values()) == 1 and ops["failed"] == 0


def test_run_and_op_durations_are_observed_when_they_end() -> None:
    state = PartitionState(0, compiler=lambda msg: (None, []))
    out = Outcome()
    state.apply(Record("t", 0, 0, b"r", wire.encode(wire.Submission(run_id="r", time=10.0, pipeline=one_op())), 10.0),
                out)
    start = next(c for c in out.effects if isinstance(c, StartOp))
    report = wire.OpReport(run_id="r", path=start.path, attempt=start.attempt, status="running", time=12.0)
    state.apply(Record("t", 0, 1, b"r", wire.encode(report), 12.0), out)
    report = wire.OpReport(run_id="r", path=start.path, attempt=start.attempt, status="succeeded", time=42.0)
    state.apply(Record("t", 0, 2, b"r", wire.encode(report), 42.0), out)
    m = Metrics()
    for change in out.transitions:
        m.observe_done(change, state.engine)
    got = scrape(m)
    op_sum = {labels["status"]: v for labels, v in got["flowd_op_duration_seconds_sum"]}
    run_sum = {labels["status"]: v for labels, v in got["flowd_run_duration_seconds_sum"]}
    assert op_sum == {s: 30.0 if s == "succeeded" else 0.0 for s in DONE}
    assert run_sum == {s: 32.0 if s == "succeeded" else 0.0 for s in DONE}


def test_ops_pending_then_lost() -> None:
    """Pending from the start order until the executor says it runs; lost when its attempt
    ended unseen (reason Lost) and no retry is left; a plain failure is not lost."""
    from flowd.daemon.metrics import op_backlog

    state = PartitionState(0, compiler=lambda msg: (None, []))
    out = Outcome()
    state.apply(Record("t", 0, 0, b"r", wire.encode(wire.Submission(run_id="r", time=1.0, pipeline=one_op())), 1.0), out)
    start = next(c for c in out.effects if isinstance(c, StartOp))
    assert op_backlog([state]) == (1, 0)  # queued: handed to the executor
    report = wire.OpReport(run_id="r", path=start.path, attempt=start.attempt, status="running", time=2.0)
    state.apply(Record("t", 0, 1, b"r", wire.encode(report), 2.0), out)
    assert op_backlog([state]) == (0, 0)
    report = wire.OpReport(run_id="r", path=start.path, attempt=start.attempt, status="failed", time=3.0,
                           reason="Lost", message="ended while no daemon watched it")
    state.apply(Record("t", 0, 2, b"r", wire.encode(report), 3.0), out)
    assert op_backlog([state]) == (0, 1)
    m = Metrics()
    m.add_state_collector(lambda: [("flowd_ops_pending", 0), ("flowd_ops_lost", 1)])
    got = scrape(m)
    assert got["flowd_ops_lost"] == [({}, 1.0)] and got["flowd_ops_pending"] == [({}, 0.0)]
    # both reasons exist at 0 before the first lost attempt
    assert sorted(labels["reason"] for labels, _ in got["flowd_attempts_lost_total"]) == ["Lost", "pod missing"]


def test_cache_hit_and_miss_series_exist_at_zero() -> None:
    got = scrape(Metrics())
    assert {labels["result"]: v for labels, v in got["flowd_cache_lookups_total"]} == {"hit": 0.0, "miss": 0.0}
    assert got["flowd_cache_entries_written_total"] == [({}, 0.0)]
