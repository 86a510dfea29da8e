"""``flowd run`` end to end on the dataflow features of issue 11 (fan-in, DAG outputs, cache,
the refusal of event-triggered pipelines)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_flowd_run import flowd, write


def test_flowd_run_refuses_an_event_triggered_pipeline(tmp_path: Path) -> None:
    path = write(tmp_path, "on-event.yaml", """
        version: 1.1
        kind: operation
        events:
          - ref: runs.8d8b0bd26c2b4c43b4c1d35e1c8e4a37
            kinds: [run_status_succeeded]
        component:
          run: {kind: job, container: {image: busybox, command: [sh, -c, "touch ran"]}}
    """)
    proc = flowd(path, state=tmp_path / "state")
    assert proc.returncode == 2
    assert "event-triggered" in proc.stderr and "flowd serve" in proc.stderr
    assert not list((tmp_path / "state").rglob("ran"))


def test_a_second_run_reuses_cached_results(tmp_path: Path) -> None:
    from tests.e2e.test_flowd_run import FEATURES, run_json

    state = tmp_path / "state"
    first = run_json(FEATURES / "cache.yaml", state=state, expect_rc=0)
    assert not any(op.get("cache_hit") for op in first["ops"].values())
    # the run again: a fresh run (its old state discarded) that finds the state dir's cache
    second = run_json(FEATURES / "cache.yaml", state=state, expect_rc=0)
    prepare = second["ops"]["prepare"]
    assert prepare["cache_hit"] is True and prepare["outputs"] == {"rows": 5}
    assert prepare["cache_source"] == {"run_id": first["run_id"], "op": "prepare"}
    assert "cache_hit" not in second["ops"]["always"] and "cache_hit" not in second["ops"]["fresh"]
    attempts = list((state / "runs" / second["run_id"] / "attempts").iterdir())
    assert not any("prepare" in p.name for p in attempts)  # no process ran for it
