"""``flowd run`` end to end: the CLI as a subprocess on the feature examples and on small
pipelines written here, asserting the JSON report, exit codes, kill -9 + ``--resume`` and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.infra.common import pid_alive as alive

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ROOT / "examples" / "features"


def flowd(*args: str | Path, state: Path, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowd", "run", *map(str, args), "--state-dir", str(state)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw,
    )


def start_flowd(*args: str | Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowd", "run", *map(str, args), "--state-dir", str(state), "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


def run_json(file: Path, *extra: str, state: Path, expect_rc: int | None = None, **kw: Any) -> dict[str, Any]:
    proc = flowd(file, "--output", "json", *extra, state=state, **kw)
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    if expect_rc is not None:
        assert proc.returncode == expect_rc, proc.stderr
    assert proc.returncode == (0 if report["status"] == "succeeded" else 1)
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {path: op["status"] for path, op in report["ops"].items()}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def wait_for(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)



# ------------------------------------------------------------------------- feature examples


def check_retries(r: dict[str, Any]) -> None:
    flaky = r["ops"]["flaky"]
    assert (r["status"], flaky["status"], flaky["attempts"], flaky["outputs"]) == ("succeeded", "succeeded", 3, {"tries": 3})


def check_timeout(r: dict[str, Any]) -> None:
    assert r["status"] == "failed"
    assert statuses(r) == {"slow": "failed", "cleanup": "succeeded"}
    assert r["ops"]["slow"]["attempts"] == 1 and "timed out" in r["ops"]["slow"]["message"]


def check_conditions(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert statuses(r) == {
        "evaluate": "succeeded", "deploy": "skipped", "announce": "skipped", "archive": "succeeded", "report": "succeeded",
    }


def check_triggers(r: dict[str, Any]) -> None:
    assert r["status"] == "failed"
    s = statuses(r)
    assert s.pop("boom") == "failed" and s.pop("on-all-succeeded") == "upstream_failed"
    assert set(s.values()) == {"succeeded"}
    boom_end = r["ops"]["boom"]["finished_at"]
    assert r["ops"]["on-one-done"]["finished_at"] < boom_end
    assert r["ops"]["on-one-succeeded"]["finished_at"] < boom_end


def check_events(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded" and set(statuses(r).values()) == {"succeeded"}
    assert r["ops"]["live-monitor"]["finished_at"] < r["ops"]["train"]["finished_at"]
    assert r["ops"]["evaluate"]["outputs"] == {"seen": 0.25}


def check_nested(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert statuses(r) == {"etl": "succeeded", "etl/extract": "succeeded", "etl/load": "succeeded", "publish": "succeeded"}
    assert r["ops"]["etl/extract"]["outputs"] == {"rows": 7}


def check_mapping(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded" and set(statuses(r).values()) == {"succeeded"}
    for i in range(3):
        assert r["ops"][f"per-shard[{i}]/extract"]["outputs"] == {"rows": 10 * i}
        assert f"per-shard[{i}]/load" in r["ops"]
    assert "merge" in r["ops"]


def check_grid(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    scores = sorted(round(r["ops"][f"tune[{i}]"]["outputs"]["score"], 6) for i in range(4))
    assert scores == [0.2, 0.4, 0.4, 0.8]
    assert "tune[4]" not in r["ops"]


def check_random(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    lrs = [r["ops"][f"tune[{i}]"]["outputs"]["lr"] for i in range(4)]
    assert all(0.001 <= lr <= 0.1 for lr in lrs) and len(set(lrs)) == 4
    # concurrency 1: each child starts after the previous one finished
    for i in range(3):
        assert r["ops"][f"tune[{i}]"]["finished_at"] <= r["ops"][f"tune[{i + 1}]"]["started_at"]


def check_early_stopping(r: dict[str, Any]) -> None:
    assert r["status"] == "failed"
    s = statuses(r)
    assert s["part-1"] == "failed" and s["part-2"] == "failed"
    rest = [s[f"part-{i}"] for i in (3, 4, 5)]
    assert set(rest) <= {"stopped", "succeeded"} and "stopped" in rest


def check_metric(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert statuses(r) == {"search": "succeeded", "search[0]": "succeeded", "search[1]": "succeeded",
                           "search[2]": "stopped", "search[3]": "stopped"}


def check_hyperband(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    children = {k: v for k, v in r["ops"].items() if k.startswith("tune[")}
    assert len(children) == 22 and {v["status"] for v in children.values()} == {"succeeded"}
    # losses fall with the epochs: the best run of each bracket's last round beats round 0's median
    losses = sorted(v["outputs"]["loss"] for v in children.values())
    assert losses[0] < 0.2


def check_bayes(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    losses = [r["ops"][f"tune[{i}]"]["outputs"]["loss"] for i in range(6)]
    assert "tune[6]" not in r["ops"]
    assert min(losses[3:]) < min(losses[:3])


def check_tpe(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    children = [k for k in r["ops"] if k.startswith("tune[")]
    assert len(children) == 12 and all(r["ops"][k]["status"] == "succeeded" for k in children)


def check_iterative(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert [r["ops"][f"tune/tuner-{i}"]["status"] for i in range(3)] == ["succeeded"] * 3
    trials = [v for k, v in r["ops"].items() if k.startswith("tune[")]
    assert len(trials) == 9 and {t["status"] for t in trials} == {"succeeded"}
    first = min(r["ops"][f"tune[{i}]"]["outputs"]["loss"] for i in (1, 2, 3))
    last = min(r["ops"][f"tune[{i}]"]["outputs"]["loss"] for i in (9, 10, 11))
    assert last < first


def check_policies(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    for kind in ("median", "truncation", "diff"):
        assert r["ops"][kind]["status"] == "succeeded"
        assert r["ops"][f"{kind}[0]"]["status"] == "succeeded" and r["ops"][f"{kind}[0]"]["outputs"] == {"loss": 0.1}
        assert r["ops"][f"{kind}[3]"]["status"] == "stopped"
        assert f"EarlyStopping:{kind}" in r["ops"][f"{kind}[3]"]["message"]
        # the last point of each child's curve is in the report, also for the stopped ones
        assert r["ops"][f"{kind}[0]"]["metrics"] == {"loss": 0.1}
        assert set(r["ops"][f"{kind}[3]"]["metrics"]) == {"loss"}


def check_services(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert statuses(r) == {"server": "succeeded", "client": "succeeded"}


def check_outputs(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert r["ops"]["produce"]["outputs"] == {"rows": 3, "table": "sales"}
    assert r["ops"]["consume"]["outputs"] == {"summary": "hello: 3 rows of sales"}


def check_approval(r: dict[str, Any]) -> None:
    # nobody approved: the run cannot progress and flowd stops it rather than hang
    assert r["status"] == "stopped"
    assert statuses(r) == {"build": "succeeded", "deploy": "stopped"}
    # and says why, naming what each op waited for
    assert "deploy waits for approval (flowd approve / --approve deploy)" in r["message"]


def check_schedule(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    collects = sorted(path for path in r["ops"] if path.endswith("/collect"))
    assert len(collects) == 2 and all(r["ops"][p]["status"] == "succeeded" for p in collects)
    first, second = (r["ops"][p]["started_at"] for p in collects)
    assert second > first


def check_fan_in(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert r["ops"]["tune"]["outputs"] == {"loss": [0.09, 0.0, 0.009]}
    assert r["ops"]["pick"]["outputs"] == {"best": 0.0, "lr": 0.01}


def check_map_reduce(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert r["ops"]["per-shard"]["outputs"] == {"rows": [1, 2, 3]}
    assert r["ops"]["reduce"]["outputs"] == {"total": 6}
    assert r["ops"]["lister"]["finished_at"] <= r["ops"]["per-shard"]["started_at"]


def check_dag_outputs(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert r["ops"]["l1/l2/l3"]["outputs"] == {"n": 21}
    assert r["ops"]["l1/l2"]["outputs"] == {"got": 42} and r["ops"]["l1"]["outputs"] == {"got": 42}
    assert r["ops"]["use"]["outputs"] == {"seen": 42}


def check_presets(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert (r["ops"]["flaky"]["attempts"], r["ops"]["flaky"]["outputs"]) == (3, {"tries": 3})
    assert r["ops"]["steady"]["attempts"] == 1


def check_init(r: dict[str, Any]) -> None:
    assert statuses(r) == {"publish": "succeeded", "train": "succeeded"}
    assert r["ops"]["train"]["outputs"] == {"model": "v2", "script": "ok", "base": "python:3.12-slim",
                                            "prepared": "yes", "token_chars": 31}


def check_cache(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded" and r["ops"]["prepare"]["outputs"] == {"rows": 5}
    assert not any(op.get("cache_hit") for op in r["ops"].values())


def check_joins(r: dict[str, Any]) -> None:
    assert r["status"] == "succeeded"
    assert r["ops"]["reduce"]["outputs"] == {"losses": [0.0, 0.009], "lrs": [0.01, 0.001]}
    # lineage: the two best children, best first
    assert [(j["run_id"], j["op"]) for j in r["ops"]["reduce"]["joined"]] == [(r["run_id"], "tune[1]"), (r["run_id"], "tune[2]")]


def check_hooks(r: dict[str, Any]) -> None:
    # a failing hook run does not fail its pipeline
    assert r["status"] == "succeeded" and statuses(r) == {"train": "succeeded"}
    got = [(h["op"], h["index"], h["trigger_status"], h["status"]) for h in r["hooks"]]
    assert got == [("train", 0, "succeeded", "succeeded"), ("train", 1, "succeeded", "skipped"),
                   ("", 0, "succeeded", "failed")]
    assert r["hooks"][0]["outputs"] == {"sent": "train succeeded"}
    assert len({h["run_id"] for h in r["hooks"]}) == 3


def check_artifacts(r: dict[str, Any]) -> None:
    assert statuses(r) == {"train": "succeeded", "evaluate": "succeeded"}
    model = Path(r["ops"]["train"]["outputs"]["model"])
    assert model.read_text() == "weights-v1" and model.parts[-3:] == (r["run_id"], "train", "model")
    assert (model.parent / "report" / "summary.txt").read_text() == "loss 0.1"
    assert r["ops"]["evaluate"]["artifacts"]["consumed"] == [
        {"path": str(model.parent), "run_id": r["run_id"]}, {"path": str(model), "run_id": r["run_id"]}]


EXAMPLES = {
    "joins.yaml": check_joins,
    "hooks.yaml": check_hooks,
    "artifacts.yaml": check_artifacts,
    "cache.yaml": check_cache,
    "presets.yaml": check_presets,
    "fan-in.yaml": check_fan_in,
    "map-reduce.yaml": check_map_reduce,
    "dag-outputs.yaml": check_dag_outputs,
    "schedule.yaml": check_schedule,
    "approval.yaml": check_approval,
    "retries.yaml": check_retries,
    "timeout.yaml": check_timeout,
    "conditions.yaml": check_conditions,
    "triggers.yaml": check_triggers,
    "events.yaml": check_events,
    "nested-dag.yaml": check_nested,
    "matrix-mapping.yaml": check_mapping,
    "matrix-grid.yaml": check_grid,
    "matrix-random.yaml": check_random,
    "early-stopping.yaml": check_early_stopping,
    "early-stopping-metric.yaml": check_metric,
    "services.yaml": check_services,
    "matrix-hyperband.yaml": check_hyperband,
    "matrix-bayes.yaml": check_bayes,
    "matrix-tpe.yaml": check_tpe,
    "matrix-iterative.yaml": check_iterative,
    "early-stopping-policies.yaml": check_policies,
    "outputs.yaml": check_outputs,
    "init.yaml": check_init,
}


def test_every_feature_example_has_a_check() -> None:
    assert sorted(p.name for p in FEATURES.glob("*.yaml")) == sorted(EXAMPLES)


# flags an example needs (each example's header says how to run it)
EXAMPLE_ARGS = {
    "presets.yaml": ("--presets", str(ROOT / "examples" / "presets")),
    "init.yaml": ("--executor-config", str(FEATURES / "init-connections.json"),
                  "--secrets-dir", str(ROOT / "examples" / "secrets")),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_feature_example(name: str, tmp_path: Path) -> None:
    # the iterative example's tuner component lives in examples/hub
    report = run_json(FEATURES / name, *EXAMPLE_ARGS.get(name, ()), state=tmp_path,
                        env={**os.environ, "FLOWD_HUB": str(ROOT / "examples" / "hub")})
    EXAMPLES[name](report)
    for op in report["ops"].values():
        # identical ops of one run may reuse each other's cached result (cache_hit, cache_source);
        # an op with joins lists the runs they selected (joined), one with artifacts its lineage,
        # one that reported intermediate metrics their last values (metrics)
        optional = {"cache_hit", "cache_source", "joined", "artifacts", "metrics"}
        assert set(op) - optional == {"status", "attempts", "outputs", "started_at", "finished_at", "message"}
        for key in ("started_at", "finished_at"):
            if op[key] is not None:
                assert datetime.fromisoformat(op[key]).tzinfo is not None


def test_param_sets_a_top_level_input(tmp_path: Path) -> None:
    report = run_json(FEATURES / "conditions.yaml", "--param", "min_accuracy=0.5", state=tmp_path)
    assert set(statuses(report).values()) == {"succeeded"}


def test_approve_in_advance(tmp_path: Path) -> None:
    report = run_json(FEATURES / "approval.yaml", "--approve", "deploy", state=tmp_path, expect_rc=0)
    assert statuses(report) == {"build": "succeeded", "deploy": "succeeded"}


# ----------------------------------------------------------------------------- the CLI


def test_founding_example_runs_with_the_hub_from_the_environment(tmp_path: Path) -> None:
    proc = flowd(ROOT / "examples" / "founding" / "pipeline.yaml", "--output", "json", state=tmp_path,
                 env={**os.environ, "FLOWD_HUB": str(ROOT / "examples" / "hub")})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded" and len(report["ops"]) == 2


def test_invalid_spec_exits_2_with_check_messages(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", """\
        version: 1.1
        kind: component
        name: bad
        run:
          kind: dag
          operations:
            - name: a
              dependencies: [missing]
              component:
                run: {kind: job, container: {image: busybox, command: ["true"]}}
        """)
    proc = flowd(bad, "--output", "json", state=tmp_path / "state")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "missing" in proc.stderr


def test_text_output_off_a_terminal_is_one_line_per_status_change(tmp_path: Path) -> None:
    proc = flowd(FEATURES / "outputs.yaml", state=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[1:] == ["produce", "running"] for line in lines)
    assert any(line.split()[1:] == ["consume", "succeeded"] for line in lines)
    assert lines[-1].startswith("pipeline outputs: succeeded")


def test_failed_op_message_names_its_logs(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "p.yaml", """\
        version: 1.1
        kind: component
        name: p
        run:
          kind: dag
          operations:
            - name: bad
              component:
                run: {kind: job, container: {image: busybox, command: [sh, -c, "echo 'disk full' >&2; exit 4"]}}
        """)
    report = run_json(pipeline, state=tmp_path / "state", expect_rc=1)
    message = report["ops"]["bad"]["message"]
    assert "disk full" in message
    log_dir = Path(message.rsplit("logs: ", 1)[1].rstrip(")"))
    assert (log_dir / "stderr.log").read_text() == "disk full\n"


RESUMABLE = """\
    version: 1.1
    kind: component
    name: resumable
    run:
      kind: dag
      operations:
        - name: a
          component:
            run: {{kind: job, container: {{image: busybox, command: [sh, -c, "echo a >> {log}"]}}}}
        - name: b
          dependencies: [a]
          component:
            outputs: [{{name: n, type: int}}]
            run:
              kind: job
              container:
                image: busybox
                command: [sh, -c, "echo $$ >> {log}.pids; echo b-start >> {log}; if [ -f {log}.once ]; then sleep 0.1; else touch {log}.once; sleep 30; fi; echo b-end >> {log}; echo '{{\\"n\\": 1}}' > $FLOWD_OUTPUTS"]
        - name: c
          dependencies: [b]
          component:
            run: {{kind: job, container: {{image: busybox, command: [sh, -c, "echo c >> {log}"]}}}}
    """


def test_kill_9_then_resume_does_not_rerun_succeeded_ops(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pipeline = write(tmp_path, "p.yaml", RESUMABLE.format(log=log))
    state = tmp_path / "state"
    proc = start_flowd(pipeline, state=state)
    try:
        wait_for(lambda: log.exists() and "b-start" in log.read_text())
    finally:
        proc.kill()  # SIGKILL: no cleanup at all; b's process is orphaned mid-run
        proc.communicate()
    report = run_json(pipeline, "--resume", state=state, expect_rc=0)
    assert statuses(report) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert report["ops"]["b"]["outputs"] == {"n": 1} and report["ops"]["b"]["attempts"] == 1
    # a ran once; the orphaned b (sleeping 30 s) was killed and b ran again from the start; c once
    assert log.read_text().split() == ["a", "b-start", "b-start", "b-end", "c"]
    orphan = int(Path(f"{log}.pids").read_text().split()[0])
    assert not alive(orphan)

    # resuming a finished run reports it again and runs nothing
    again = run_json(pipeline, "--resume", state=state, expect_rc=0)
    assert statuses(again) == statuses(report)
    assert log.read_text().split() == ["a", "b-start", "b-start", "b-end", "c"]

    # without --resume the same file is a fresh run (--no-cache: the state dir's cache would
    # otherwise reuse the results of the first run)
    fresh = run_json(pipeline, "--no-cache", state=state, expect_rc=0)
    assert fresh["ops"]["a"]["started_at"] > report["ops"]["c"]["finished_at"]
    assert log.read_text().split().count("a") == 2


def test_ctrl_c_stops_the_pipeline_and_its_processes(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pipeline = write(tmp_path, "p.yaml", f"""\
        version: 1.1
        kind: component
        name: interrupted
        run:
          kind: dag
          operations:
            - name: long
              component:
                run: {{kind: job, container: {{image: busybox, command: [sh, -c, "sleep 30 & echo $! >> {pids}; wait"]}}}}
            - name: after
              dependencies: [long]
              component:
                run: {{kind: job, container: {{image: busybox, command: ["true"]}}}}
        """)
    proc = start_flowd(pipeline, "--stop-grace", "2", state=tmp_path / "state")
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    report = json.loads(out)
    assert report["status"] == "stopped"
    assert statuses(report) == {"long": "stopped", "after": "stopped"}
    sleeper = int(pids.read_text())
    wait_for(lambda: not alive(sleeper), timeout=3)


def test_a_second_ctrl_c_kills_at_once(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    pipeline = write(tmp_path, "p.yaml", f"""\
        version: 1.1
        kind: component
        name: stubborn
        run:
          kind: dag
          operations:
            - name: deaf
              component:
                run: {{kind: job, container: {{image: busybox, command: [sh, -c, "trap '' TERM; touch {ready}; while :; do sleep 0.1; done"]}}}}
        """)
    proc = start_flowd(pipeline, "--stop-grace", "60", state=tmp_path / "state")
    try:
        wait_for(ready.exists)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # the op ignores SIGTERM: flowd waits out the grace period...
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # ...unless told again
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 1, err
    report = json.loads(out)
    assert report["status"] == "stopped" and statuses(report) == {"deaf": "stopped"}


def test_a_single_job_file_is_reported_under_its_name(tmp_path: Path) -> None:
    job = write(tmp_path, "job.yaml", """\
        version: 1.1
        kind: component
        name: single
        inputs: [{name: who, type: str}]
        outputs: [{name: greeting, type: str}]
        run:
          kind: job
          container: {image: busybox, command: [sh, -c, "echo '{\\"greeting\\": \\"hi {{ who }}\\"}' > $FLOWD_OUTPUTS"]}
        """)
    report = run_json(job, "--param", "who=bob", state=tmp_path / "state", expect_rc=0)
    assert report["ops"]["single"]["outputs"] == {"greeting": "hi bob"}


def test_a_kill_in_the_middle_of_a_journal_append_then_resume(tmp_path: Path) -> None:
    """``FLOWD_TEST_CRASH_AT=run.journal_torn``: flowd writes half of its first journal frame and
    SIGKILLs itself (flowd.faults). The torn frame is ignored, --resume goes on from the last
    whole batch (a started, nothing reported yet: a runs again under the same attempt), and the
    rest of the pipeline runs once."""
    from flowd.runtime.journal import read_journal
    from flowd.runtime.store import SnapshotStore

    log = tmp_path / "log"
    op = "{{name: {n}, {deps}component: {{run: {{kind: job, container: {{image: x, command: [sh, -c, 'echo {n} >> {log}']}}}}}}}}"
    ops = [op.format(n=n, deps=f"dependencies: [{d}], " if d else "", log=log) for n, d in (("a", ""), ("b", "a"), ("c", "b"))]
    pipeline = write(tmp_path, "p.yaml", "version: 1.1\nkind: component\nname: torn\nrun:\n  kind: dag\n  operations:\n"
                     + "".join(f"    - {o}\n" for o in ops))
    state = tmp_path / "state"
    env = {**os.environ, "FLOWD_TEST_CRASH_AT": "run.journal_torn"}
    killed = flowd(pipeline, "--output", "json", state=state, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = SnapshotStore(state)
    (run_id,) = store.run_ids()
    entries, good, torn = read_journal(store.journal_path(run_id))
    assert torn and entries == [] and good == 0 and store.journal_path(run_id).stat().st_size > 0
    report = run_json(pipeline, "--resume", state=state, expect_rc=0)
    assert statuses(report) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert [report["ops"][p]["attempts"] for p in "abc"] == [1, 1, 1]
    lines = log.read_text().split()
    assert lines[-2:] == ["b", "c"] and lines.count("b") == 1 and set(lines[:-2]) <= {"a"}
