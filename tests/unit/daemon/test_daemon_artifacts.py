"""The daemon's artifact store setting (flowd.daemon.artifacts): flowd.toml/env/flag like every
setting; the executors get it; every run's context names it, so ``ops.X.artifacts`` refs
resolve under ``flowd serve`` as they do under ``flowd run``."""

from __future__ import annotations

from flowd.daemon import wire
from flowd.daemon.artifacts import artifacts_location, executor_settings
from flowd.daemon.config import load_config
from flowd.daemon.partition import Outcome, PartitionState
from flowd.engine.messages import StartOp
from tests.unit.daemon.test_partition import Log, no_compiler, pipeline

CHAIN = """
version: 1.1
kind: component
name: chain
run:
  kind: dag
  operations:
    - {name: train, component: {run: {kind: job, container: {image: x, command: [train]}}}}
    - name: evaluate
      params: {base: {ref: ops.train, value: artifacts.base}}
      component: {inputs: [{name: base, type: str}], run: {kind: job, container: {image: x, command: [eval, "{{ base }}"]}}}
"""


def test_the_setting_is_read_from_env_and_given_to_each_executor(tmp_path) -> None:
    env = {"FLOWD_ARTIFACTS_STORE": "s3://bucket/team/", "FLOWD_ARTIFACTS_ENDPOINT": "http://s3:9000",
           "FLOWD_EXECUTOR": "k8s", "FLOWD_STATE_DIR": str(tmp_path)}
    k8s = load_config(env=env)
    assert artifacts_location(k8s) == "s3://bucket/team"
    assert executor_settings(k8s) == {"artifacts_store": "s3://bucket/team/", "artifacts_endpoint": "http://s3:9000"}
    local = load_config(env={**env, "FLOWD_EXECUTOR": "local", "FLOWD_ARTIFACTS_STORE": ""})
    assert artifacts_location(local) == str(tmp_path / "artifacts")
    assert executor_settings(local) == {"FLOWD_ARTIFACTS_ENDPOINT": "http://s3:9000"}
    folder_for_pods = load_config(env={**env, "FLOWD_ARTIFACTS_STORE": str(tmp_path)})
    assert artifacts_location(folder_for_pods) is None  # pods cannot reach a folder: refs fail clearly
    assert artifacts_location(load_config(env={**env, "FLOWD_EXECUTOR": "instant"})) is None


def test_a_run_under_the_daemon_resolves_artifacts_refs_to_the_store() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    state.artifacts_store = "s3://bucket/team"
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline(CHAIN), context={"artifacts_store": "/elsewhere"}))
    out = Outcome()
    state.apply(log.records[0], out)
    (train,) = [c for c in out.effects if isinstance(c, StartOp)]
    done = Outcome()
    state.apply(log.add(wire.OpReport(run_id="r1", path="train", attempt=train.attempt, status="succeeded",
                                      time=2.0)), done)
    (evaluate,) = [c for c in done.effects if isinstance(c, StartOp)]
    assert evaluate.params["base"] == "s3://bucket/team/r1/train"
    assert evaluate.run["container"]["command"] == ["eval", "s3://bucket/team/r1/train"]
