"""The daemon against the real broker: submissions over a limit (an alias bomb, a 1000^3 grid as
YAML, the same grid compiled elsewhere) each end with one failed completion event carrying the
diagnostics, the daemon's memory does not move, and the partition goes on with the next run."""

from __future__ import annotations

import contextlib
import resource
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.config import DaemonConfig
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from flowd.spec import compile_text
from flowd.spec.limits import Limits
from tests.unit.spec.test_limits import GRID, alias_bomb

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

CHAIN = """
version: 1.1
kind: component
name: chain
run:
  kind: dag
  operations:
    - {name: a, component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
    - {name: b, dependencies: [a], component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
"""


@contextlib.asynccontextmanager
async def serving(config: DaemonConfig) -> AsyncIterator[EventCollector]:
    daemon = Daemon(config)
    events = EventCollector(config)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(30):
            await daemon.wait_ready()
        await tg.start(events.run)
        try:
            yield events
        finally:
            tg.cancel_scope.cancel()


async def submit(config: DaemonConfig, **fields) -> str:
    run_id = str(uuid.uuid4())
    await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), **fields))
    return run_id


async def test_over_limit_submissions_fail_and_the_partition_goes_on(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="limits", state_dir=str(tmp_path), partitions=1)
    assert config.limits == Limits()
    big = compile_text(textwrap.dedent(GRID), source="grid.yaml", limits=Limits(max_ops=2 * 10**9))
    assert big.valid
    async with serving(config) as events:
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        bomb = await submit(config, spec=alias_bomb(), source="bomb.yaml")
        grid = await submit(config, spec=textwrap.dedent(GRID), source="grid.yaml")
        compiled = await submit(config, pipeline=big.op)
        ok = await submit(config, spec=CHAIN, source="chain.yaml")

        done = await events.wait_done(bomb)
        assert done.status == "failed"
        [diag] = done.diagnostics
        assert (diag.path, diag.line) == ("bomb.yaml", 7) and "(setting max_yaml_expanded_bytes)" in diag.message

        done = await events.wait_done(grid)
        assert done.status == "failed"
        expected = "this matrix expands to 1,000,000,000 runs; the limit is 250,000 (setting max_ops)"
        assert [(d.location, d.message) for d in done.diagnostics] == [("run.operations[0].matrix", expected)]
        assert "1,000,000,000 runs" in (done.message or "")

        done = await events.wait_done(compiled)
        assert done.status == "failed"
        assert done.message == "the pipeline expands to 1,000,000,002 ops; the limit is 250,000 (setting max_ops)"

        assert (await events.wait_done(ok)).status == "succeeded"
        for run_id in (bomb, grid, compiled, ok):
            assert len(events.completions(run_id)) == 1
        # nothing was expanded: the process's peak memory did not grow by anything like a
        # billion of anything (expanded, the bomb alone is gigabytes)
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert grown_kib < 100 * 1024, grown_kib
