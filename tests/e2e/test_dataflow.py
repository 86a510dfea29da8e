"""``flowd run`` end to end on the dataflow features of issue 11 (fan-in, DAG outputs, cache,
the refusal of event-triggered pipelines)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
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


def test_identical_ops_running_at_once_compute_once_and_the_others_take_the_result(tmp_path: Path) -> None:
    from tests.e2e.test_flowd_run import run_json

    marks = tmp_path / "marks"
    # three ops of one component with the same inputs (one cache key), all ready at once
    job = textwrap.indent(textwrap.dedent(f"""\
        component:
          outputs: [{{name: n, type: int}}]
          run:
            kind: job
            container:
              image: busybox
              command: [sh, -c]
              args: ["echo x >> {marks}; sleep 1; echo '{{\\"n\\": 7}}' > $FLOWD_OUTPUTS"]
    """), "      ")
    text = "version: 1.1\nkind: component\nname: same\nrun:\n  kind: dag\n  operations:\n"
    for name in ("a", "b", "c"):
        text += f"    - name: {name}\n" + job
    path = tmp_path / "same.yaml"
    path.write_text(text)
    report = run_json(path, state=tmp_path / "state", expect_rc=0)
    assert marks.read_text() == "x\n"  # one process ran
    ops = report["ops"]
    assert {p: op["outputs"] for p, op in ops.items()} == {"a": {"n": 7}, "b": {"n": 7}, "c": {"n": 7}}
    hits = sorted(p for p, op in ops.items() if op.get("cache_hit"))
    assert len(hits) == 2
    (runner,) = set(ops) - set(hits)
    assert all(ops[p]["cache_source"] == {"run_id": report["run_id"], "op": runner} for p in hits)


def test_a_kill_9_while_a_hook_runs_then_resume_finishes_the_hook_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hub = tmp_path / "hub"
    hub.mkdir()
    # the first start of the hook sleeps (and is orphaned by the kill); the resumed one is quick
    (hub / "slow-notify.yaml").write_text(textwrap.dedent(f"""
    kind: component
    name: slow-notify
    inputs: [{{name: status, type: str}}]
    run:
      kind: job
      container:
        image: x
        command: [sh, -c, "echo start-{{{{ status }}}} >> {log}; if [ -f {log}.once ]; then true; else touch {log}.once; sleep 30; fi; echo end >> {log}"]
    """))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent("""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: a
          hooks: [{hubRef: slow-notify}]
          component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}
    """))
    state = tmp_path / "state"
    args = [sys.executable, "-m", "flowd", "run", str(pipeline), "--hub", str(hub), "--state-dir", str(state),
            "--output", "json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and "start-succeeded" in log.read_text()):
            assert time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)
    finally:
        proc.kill()  # the pipeline has ended; its hook run is mid-flight
        proc.communicate()
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=60)
    report = json.loads(resumed.stdout)
    assert resumed.returncode == 0 and report["status"] == "succeeded", resumed.stderr
    assert [(h["op"], h["status"]) for h in report["hooks"]] == [("a", "succeeded")]
    # the orphaned first start was killed and the hook ran again, to its end, once
    assert log.read_text().split() == ["start-succeeded", "start-succeeded", "end"]
