"""Prometheus metrics of one daemon (its own registry). Labels are bounded: topic, status,
outcome, reason, partition number -- never a run id or an op path."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily

from flowd import __version__ as _VERSION
from flowd.engine import DONE, STATUSES, StatusChanged

__all__ = ["Metrics"]

# runs and ops last from a second to a day
_DURATION = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# HELP texts of the gauges computed at scrape time (add_state_collector)
STATE_HELP = {
    "flowd_runs": "Pipeline runs held by this daemon's partitions, by phase",
    "flowd_ops": "Ops (every node below a run's root) held by this daemon's partitions, by phase",
    "flowd_partitions_owned": "Runs partitions this daemon owns",
    "flowd_timers_pending": "Timers (retries, schedules, timeouts) armed and not yet fired",
    "flowd_snapshot_age_seconds": "Seconds since the last snapshot of each owned partition",
}
# outcomes and reasons known in advance: their series exist (at 0) from the start, so rate()
# and alerts see them before the first occurrence
TRANSACTION_OUTCOMES = ("committed", "aborted", "failed")
DEAD_LETTER_REASONS = ("undecodable", "invalid", "rejected")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # process (CPU, memory, fds), Python GC and platform metrics, as prometheus_client's
        # default registry has them; this registry is the daemon's own
        for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
            r.register(collector)
        self.build_info = Gauge("flowd_build_info", "Always 1; the flowd version in a label", ["version"], registry=r)
        self.build_info.labels(_VERSION).set(1)
        self.consumed = Counter("flowd_events_consumed", "Input records consumed", ["topic"], registry=r)
        self.produced = Counter("flowd_events_produced", "Records produced", ["topic"], registry=r)
        self.dead_lettered = Counter("flowd_events_dead_lettered", "Input records sent to the dead-letter topic",
                                     ["reason"], registry=r)
        self.ignored = Counter("flowd_events_ignored", "Inputs without effect (duplicates, unknown runs)", registry=r)
        self.transitions = Counter("flowd_transitions", "Status transitions", ["level", "status"], registry=r)
        self._transition_children: dict[tuple[str, str], Any] = {}
        self.transition_latency = Histogram(
            "flowd_transition_latency_seconds", "From the input event's time to the commit of the transition",
            buckets=_LATENCY, registry=r)
        self.input_delay = Histogram(
            "flowd_input_delay_seconds", "From an input record's timestamp to the start of its batch's processing",
            buckets=_LATENCY, registry=r)
        self.transactions = Counter("flowd_transactions", "Kafka transactions by outcome", ["outcome"], registry=r)
        self.transaction_seconds = Histogram("flowd_transaction_duration_seconds", "Produce + commit of one batch",
                                             buckets=_LATENCY, registry=r)
        self.batch_records = Histogram("flowd_batch_records", "Input records per transaction",
                                       buckets=(1, 10, 100, 1000, 10000), registry=r)
        self.snapshot_seconds = Histogram("flowd_snapshot_duration_seconds", "Time to encode a snapshot",
                                          buckets=_LATENCY, registry=r)
        self.snapshot_bytes = Gauge("flowd_snapshot_bytes", "Size of the last snapshot", ["partition"], registry=r)
        self.recovery_seconds = Gauge("flowd_recovery_duration_seconds",
                                      "Restore + replay time of the last assignment", ["partition"], registry=r)
        self.replayed = Counter("flowd_recovery_replayed_events", "Records replayed during recovery", registry=r)
        self.loop_lag = Histogram("flowd_event_loop_lag_seconds", "Scheduling delay of the event loop",
                                  buckets=_LATENCY, registry=r)
        self.commands = Counter("flowd_executor_commands", "Commands carried out", ["command"], registry=r)
        self.executor_errors = Counter("flowd_executor_errors", "Executor calls that raised", registry=r)
        self.lag = Gauge("flowd_consumer_lag", "Records behind the end of each owned runs partition", ["partition"], registry=r)
        self.ready = Gauge("flowd_ready", "1 when every assigned partition is restored", registry=r)
        self.triggered = Counter("flowd_triggered_runs", "Runs submitted by event subscriptions", registry=r)
        self.run_seconds = Histogram("flowd_run_duration_seconds", "From a run's start to its end, by final status",
                                     ["status"], buckets=_DURATION, registry=r)
        self.op_seconds = Histogram("flowd_op_duration_seconds",
                                    "From an op's start to its end, by final status (ops that started)",
                                    ["status"], buckets=_DURATION, registry=r)
        for status in DONE:  # final statuses are bounded: their series exist from the start
            self.run_seconds.labels(status)
            self.op_seconds.labels(status)
        for outcome in TRANSACTION_OUTCOMES:
            self.transactions.labels(outcome)
        for reason in DEAD_LETTER_REASONS:
            self.dead_lettered.labels(reason)

    def count_transition(self, level: str, status: str) -> None:
        # the labelled child looked up once per (level, status): ``labels()`` per transition is
        # a measurable share of a busy partition's commit
        counter = self._transition_children.get((level, status))
        if counter is None:
            counter = self._transition_children[(level, status)] = self.transitions.labels(level, status)
        counter.inc()

    def observe_done(self, change: StatusChanged, engine: Any) -> None:
        """Observe the duration of the run or op this transition ended (``engine``: the
        partition's engine, which still holds the node and its start time)."""
        if change.status not in DONE:
            return
        run = engine.runs.get(change.run_id)
        node = run.nodes.get(change.path) if run is not None else None
        if node is None or node.started_at is None:
            return  # ended before it started (skipped, upstream failed, stopped early)
        histogram = self.run_seconds if change.path == "" else self.op_seconds
        histogram.labels(change.status).observe(max(0.0, change.time - node.started_at))

    def forget_partition(self, partition: int) -> None:
        """Drop the per-partition series of a partition this daemon no longer owns (after a
        rebalance): its new owner reports them now, and sums must not count them twice."""
        for gauge in (self.lag, self.snapshot_bytes, self.recovery_seconds):
            try:
                gauge.remove(str(partition))
            except KeyError:  # never set on this daemon
                pass

    def add_state_collector(self, collect: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        """Gauges computed at scrape time from the partitions' state (runs/ops by phase, snapshot
        age, partitions owned, timers): ``collect`` yields (name, value-or-mapping) pairs."""
        self.registry.register(_StateCollector(collect))


class _StateCollector:
    def __init__(self, collect: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self._collect = collect

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        for name, value in self._collect():
            if isinstance(value, dict):
                label = "phase" if name in ("flowd_runs", "flowd_ops") else "partition"
                fam = GaugeMetricFamily(name, STATE_HELP.get(name, name), labels=[label])
                for k, v in sorted(value.items()):
                    fam.add_metric([str(k)], float(v))
            else:
                fam = GaugeMetricFamily(name, STATE_HELP.get(name, name), value=float(value))
            yield fam


def phases(states: Iterable[Any]) -> tuple[Tally[str], Tally[str]]:
    """Runs and ops of these partition states counted by status."""
    # every phase is reported, at 0 when nothing is in it: a series that appears only with its
    # first run would hide "no runs failed" from rate() and alerts
    runs: Tally[str] = Tally(dict.fromkeys(STATUSES, 0))
    ops: Tally[str] = Tally(dict.fromkeys(STATUSES, 0))
    for state in states:
        for run in state.engine.runs.values():
            for path, node in run.nodes.items():
                if path:
                    ops[node.status] += 1
                else:
                    runs[node.status] += 1
    return runs, ops
