"""The ``events`` contract on the real broker: a consumer that dedupes by ``key``, as
proto/README.md tells outside consumers to, loses nothing -- over pipelines with approvals,
retries, a matrix and a resume -- and a resumed run emits exactly one ``done`` per epoch."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish, run_status
from flowd.daemon.replay import replay
from flowd.daemon.testing import DaemonProcess, EventCollector, test_config
from flowd.spec import compile_text

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

JOB = "{{run: {{kind: job, container: {{image: x, command: [sh, -c, '{cmd}']}}}}}}"


def contract_pipeline(marks: Path) -> str:
    ok = JOB.format(cmd="true")
    flaky = JOB.format(cmd='[ "$FLOWD_ATTEMPT" -ge 2 ]')  # fails its first attempt: retried
    once = JOB.format(cmd=f"test -f {marks}/$FLOWD_RUN_ID || {{ touch {marks}/$FLOWD_RUN_ID; exit 1; }}")
    return f"""
version: 1.1
kind: component
name: contract
run:
  kind: dag
  operations:
    - {{name: flaky, termination: {{maxRetries: 2}}, component: {flaky}}}
    - name: sweep
      matrix: {{kind: grid, params: {{v: {{kind: choice, value: [1, 2, 3]}}}}}}
      component: {{inputs: [{{name: v, type: int}}], run: {{kind: job, container: {{image: x, command: [sh, -c, "true"]}}}}}}
    - {{name: gate0, isApproved: false, component: {ok}}}
    - {{name: once, dependencies: [flaky], component: {once}}}
    - {{name: gate1, dependencies: [once], isApproved: false, component: {ok}}}
"""


def held(events: EventCollector, run_id: str, path: str, epoch: int) -> bool:
    return any(isinstance(e, wire.StatusEvent) and e.path == path and e.reason == "PendingApproval"
               and e.epoch == epoch for e in events.of(run_id))


async def test_a_consumer_deduping_by_key_loses_no_event(kafka_broker, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    config = test_config(kafka_broker.bootstrap, name="keys", state_dir=str(tmp_path / "state"), executor="local")
    result = compile_text(contract_pipeline(marks), source="contract.yaml", base_dir=None)
    assert result.valid, [d.format() for d in result.errors]
    events = EventCollector(config)
    daemon = DaemonProcess(config, log_path=tmp_path / "serve.log").start()
    try:
        await daemon.wait_ready()
        import anyio

        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_ids = [str(uuid.uuid4()) for _ in range(3)]
            for run_id in run_ids:
                await publish(config, config.topics.runs, run_id,
                              wire.Submission(run_id=run_id, time=time.time(), pipeline=result.op))
            for run_id in run_ids:
                await events.wait_for(lambda r=run_id: held(events, r, "gate0", 0), timeout=60)
                await publish(config, config.topics.runs, run_id, wire.ApproveCommand(run_id=run_id, path="gate0", time=time.time()))
            for run_id in run_ids:
                first = await events.wait_done(run_id, timeout=60)
                assert first.status == "failed" and first.epoch == 0, first
                await publish(config, config.topics.runs, run_id, wire.ResumeCommand(run_id=run_id, time=time.time()))
            for run_id in run_ids:
                await events.wait_for(lambda r=run_id: held(events, r, "gate1", 1), timeout=60)
                await publish(config, config.topics.runs, run_id, wire.ApproveCommand(run_id=run_id, path="gate1", time=time.time()))
            for run_id in run_ids:
                await events.wait_for(lambda r=run_id: len(events.completions(r)) == 2, timeout=60)
            await anyio.sleep(1.0)  # anything late would show up now
            tg.cancel_scope.cancel()

        # the consumer the contract describes: read_committed, dedupe on key
        deduped: dict[str, wire.StatusEvent | wire.CompletionEvent] = {}
        payloads: dict[str, set[bytes]] = defaultdict(set)
        for e in events.events:
            deduped.setdefault(e.key, e)
            payloads[e.key].add(wire.encode(e))
        shared = {k: len(v) for k, v in payloads.items() if len(v) > 1}
        assert not shared, f"distinct events share a key (a deduping consumer drops all but one): {shared}"
        assert len(deduped) == len(events.events), "an event was delivered twice"
        for run_id in run_ids:
            mine = [e for e in deduped.values() if e.run_id == run_id]
            done = sorted((e.epoch, e.key, e.status) for e in mine if isinstance(e, wire.CompletionEvent))
            assert done == [(0, f"{run_id}:done", "failed"), (1, f"{run_id}:done@1", "succeeded")]
            status = {(e.path, e.key.removeprefix(f"{run_id}/"), e.reason) for e in mine if isinstance(e, wire.StatusEvent)}
            for expected in [("gate0", "gate0#0:created", None), ("gate0", "gate0#0:created~1", "PendingApproval"),
                             ("gate1", "gate1#0:created@1", None), ("gate1", "gate1#0:created~1@1", "PendingApproval"),
                             ("flaky", "flaky#1:retrying", "Failed"), ("once", "once#1:failed", "Failed"),
                             ("gate1", "gate1#0:upstream_failed", "UpstreamFailed"), ("", "#0:failed", None)]:
                assert expected in status or expected[:2] in {s[:2] for s in status}, (expected, sorted(status))
            assert {e.path for e in mine if isinstance(e, wire.StatusEvent) and e.status == "succeeded"} >= {
                "flaky", "sweep", "sweep[0]", "sweep[1]", "sweep[2]", "gate0", "once", "gate1", ""}
            assert all(e.epoch == (1 if e.key.endswith("@1") else 0) for e in mine)
            view = await run_status(config, run_id)  # what `flowd status` folds: the latest epoch
            assert view is not None and (view["status"], view["done"], view["epoch"]) == ("succeeded", True, 1)
            # keys are deterministic: the log replayed offline derives exactly the emitted ones
            report = await replay(config, run_id=run_id)
            assert not report.diverged, report
    finally:
        assert daemon.terminate() == 0
