"""A submission over a limit, in the daemon's pure partition step with its real compiler: the
same failed completion event with diagnostics as an invalid spec, then the partition goes on."""

from __future__ import annotations

import textwrap
import tracemalloc

from flowd.daemon import wire
from flowd.daemon.compiler import make_compiler
from flowd.daemon.config import load_config
from flowd.daemon.partition import Outcome, PartitionState
from flowd.spec import compile_text
from flowd.spec.limits import Limits
from tests.unit.daemon.test_partition import CHAIN, Log, run_all
from tests.unit.spec.test_limits import GRID, alias_bomb


def completion(outs: list[Outcome], run_id: str) -> wire.CompletionEvent:
    [done] = [e for o in outs for rid, e in o.events if rid == run_id and isinstance(e, wire.CompletionEvent)]
    return done


def test_over_limit_submissions_fail_with_diagnostics_and_the_partition_goes_on() -> None:
    limits = Limits()
    state = PartitionState(0, compiler=make_compiler(None, limits), limits=limits)
    log = Log()
    log.add(wire.Submission(run_id="bomb", time=1.0, spec=alias_bomb(), source="bomb.yaml"))
    log.add(wire.Submission(run_id="grid", time=1.0, spec=textwrap.dedent(GRID), source="grid.yaml"))
    # a pipeline compiled elsewhere with the limit raised: the daemon's engine still counts it
    big = compile_text(textwrap.dedent(GRID), source="grid.yaml", limits=Limits(max_ops=2 * 10**9))
    assert big.valid
    log.add(wire.Submission(run_id="compiled", time=1.0, pipeline=big.op))
    log.add(wire.Submission(run_id="ok", time=1.0, spec=CHAIN, source="chain.yaml"))
    tracemalloc.start()
    try:
        outs = run_all(state, log)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak

    bomb = completion(outs, "bomb")
    assert bomb.status == "failed" and bomb.pipeline == "bomb.yaml"
    [diag] = bomb.diagnostics
    assert (diag.path, diag.line, diag.column) == ("bomb.yaml", 7, 30)
    assert "(setting max_yaml_expanded_bytes)" in diag.message and "max_yaml_expanded_bytes" in (bomb.message or "")

    grid = completion(outs, "grid")
    [diag] = grid.diagnostics
    assert grid.status == "failed" and diag.location == "run.operations[0].matrix"
    assert diag.message == "this matrix expands to 1,000,000,000 runs; the limit is 250,000 (setting max_ops)"

    compiled = completion(outs, "compiled")
    assert compiled.status == "failed"
    assert compiled.message == "the pipeline expands to 1,000,000,002 ops; the limit is 250,000 (setting max_ops)"
    assert len(state.engine.runs["compiled"].nodes) == 1

    assert completion(outs, "ok").status == "succeeded"


def test_daemon_limits_come_from_toml_env_and_flags(tmp_path) -> None:
    f = tmp_path / "flowd.toml"
    f.write_text('brokers = "b:1"\n[limits]\nmax_ops = 500\nmax_dag_depth = 4\nmax_spec_bytes = "1MiB"\n')
    config = load_config(file=str(f), env={"FLOWD_MAX_OPS": "600", "FLOWD_MAX_TEMPLATE_BYTES": "2048"},
                         limit_items=["max_ops=700"])
    assert config.limits == Limits(max_ops=700, max_dag_depth=4, max_spec_bytes=1024 * 1024, max_template_bytes=2048)
    assert load_config(env={}).limits == Limits()
