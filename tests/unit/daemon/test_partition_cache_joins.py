"""The partition step's part of the daemon cache and of joins: a succeeded attempt that carried a
cache key yields a cache entry in its batch's outcome (so in the transaction of its events), a
hit does not; joins see the partition's other runs, finished ones within max_retained_runs."""

from __future__ import annotations

from flowd.daemon import wire
from flowd.daemon.partition import Outcome, PartitionState
from flowd.engine.messages import StartOp
from flowd.spec.limits import Limits
from tests.unit.daemon.test_partition import Log, no_compiler, pipeline, run_all

CACHED = """
version: 1.1
kind: component
name: cached
run:
  kind: dag
  operations:
    - {name: a, params: {n: 1}, component: {inputs: [{name: n, type: int}], run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
"""


def test_a_succeeded_cached_attempt_yields_one_cache_entry_in_its_batch() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline(CACHED)))
    outs = run_all(state, log)
    starts = [c for o in outs for c in o.effects if isinstance(c, StartOp)]
    assert len(starts) == 1 and starts[0].cache_key
    entries = [(i, e) for i, o in enumerate(outs) for e in o.cache_entries]
    assert len(entries) == 1
    i, entry = entries[0]
    assert (entry.key, entry.run_id, entry.path, entry.finished_at) == (starts[0].cache_key, "r1", "a", 2.0)
    # the same batch holds the op's succeeded event
    assert any(isinstance(e, wire.StatusEvent) and e.path == "a" and e.status == "succeeded" for _, e in outs[i].events)


def test_a_cache_hit_report_writes_no_entry_and_says_where_it_came_from() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline(CACHED)))
    out = Outcome()
    state.apply(log.records[0], out)
    start = next(c for c in out.effects if isinstance(c, StartOp))
    hit = Outcome()
    state.apply(log.add(wire.OpReport(run_id="r1", path="a", attempt=start.attempt, status="succeeded", time=3.0,
                                      reason="CacheHit", message="cache hit: outputs of r0/a", outputs={"x": 1})), hit)
    assert hit.cache_entries == []
    event = next(e for _, e in hit.events if isinstance(e, wire.StatusEvent) and e.path == "a")
    assert (event.status, event.reason, event.message) == ("succeeded", "CacheHit", "cache hit: outputs of r0/a")
    summary = wire.run_summary(state.engine.view("r1"), time=3.0)
    assert summary.ops["a"].reason == "CacheHit" and summary.ops["a"].message == "cache hit: outputs of r0/a"


def test_a_failed_attempt_is_not_cached() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline(CACHED)))
    out = Outcome()
    state.apply(log.records[0], out)
    start = next(c for c in out.effects if isinstance(c, StartOp))
    failed = Outcome()
    state.apply(log.add(wire.OpReport(run_id="r1", path="a", attempt=start.attempt, status="failed", time=3.0)), failed)
    assert failed.cache_entries == []


REDUCER = """
version: 1.1
kind: component
name: reducer
run:
  kind: dag
  operations:
    - name: gather
      joins: [{query: "name: a, status: succeeded", sort: "-created_at", params: {runs: {value: globals.run_id}}}]
      component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}
"""


def test_joins_see_finished_runs_of_the_partition_within_max_retained_runs() -> None:
    log = Log()
    state = PartitionState(0, compiler=no_compiler, limits=Limits(max_retained_runs=2))
    for i in range(3):
        log.add(wire.Submission(run_id=f"r{i}", time=1.0 + i, pipeline=pipeline(CACHED)))
    run_all(state, log)
    assert all(state.engine.runs[f"r{i}"].done for i in range(3))
    assert state.compact(now=10.0, retention=3600.0) == 1  # the oldest finished run goes
    assert "r0" not in state.engine.runs and "r0" in state.daemon.finished
    start = len(log.records)
    log.add(wire.Submission(run_id="red", time=20.0, pipeline=pipeline(REDUCER)))
    outs = run_all(state, log, start=start)
    gather = state.engine.runs["red"].nodes["gather"]
    assert gather.status == "succeeded", gather.message
    assert gather.params["runs"] == ["r2", "r1"]  # newest first
    compiled = [e for o in outs for _, e in o.events if isinstance(e, wire.StatusEvent) and e.status == "compiled"
                and e.path == "gather"]
    assert compiled and sorted(compiled[0].joined or []) == ["r1/a", "r2/a"]


def test_the_result_cache_table_honours_ttl_and_its_bound() -> None:
    from flowd.daemon.cache import ResultCache

    cache = ResultCache(max_entries=2)
    cache.put([wire.CacheEntry(key=k, run_id="r", path=k, finished_at=t) for k, t in (("a", 10.0), ("b", 20.0))])
    assert cache.lookup("a", None, 1000.0) is not None
    assert cache.lookup("a", 60.0, 100.0) is None  # finished 90 s before the event: too old
    assert cache.lookup("b", 60.0, 70.0) is not None
    # a newer result replaces the entry; an older one read late from the topic does not
    cache.put([wire.CacheEntry(key="a", run_id="r2", path="a", finished_at=30.0)])
    cache.put([wire.CacheEntry(key="a", run_id="r1", path="a", finished_at=5.0)])
    assert cache.entries["a"].run_id == "r2"
    cache.put([wire.CacheEntry(key="c", run_id="r", path="c", finished_at=40.0)])
    assert sorted(cache.entries) == ["a", "c"]  # bounded: the least recently written went
    assert (cache.hits, cache.misses) == (2, 1)
    assert wire.decode_cache_entry(b"not json") is None
