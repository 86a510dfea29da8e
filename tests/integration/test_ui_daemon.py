"""``flowd ui --daemon`` in a real headless browser (Debian's chromium through chromium-driver): a
daemon on the real broker runs a pipeline with the local executor, and the UI, reading only
Kafka (the compacted ``status`` topic), lists the run, draws every op and shows statuses change
while it runs. Screenshots are kept in tests/output/ui/ (git-ignored) as artefacts, named
``daemon-*.png``."""

from __future__ import annotations

import re
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from flowd.spec import compile_text
from tests.ui.test_browser import browser, shot, start  # noqa: F401 - browser is a fixture

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

PIPELINE = """\
    version: 1.1
    kind: component
    name: ui-daemon
    run:
      kind: dag
      operations:
        - name: prepare
          component:
            run: {kind: job, container: {image: x, command: [sh, -c, 'while [ ! -f GO ]; do sleep 0.1; done']}}
        - name: etl
          dependencies: [prepare]
          component:
            run:
              kind: dag
              operations:
                - name: extract
                  component: {run: {kind: job, container: {image: x, command: [sh, -c, 'sleep 0.3']}}}
                - name: load
                  dependencies: [extract]
                  component: {run: {kind: job, container: {image: x, command: [sh, -c, 'true']}}}
        - name: sweep
          dependencies: [etl]
          matrix: {kind: grid, params: {lr: {kind: choice, value: [0.3, 0.1]}}}
          component:
            inputs: [{name: lr, type: float}]
            run: {kind: job, container: {image: x, command: [sh, -c, 'true']}}
    """


async def test_ui_shows_a_daemon_run_live_over_kafka(kafka_broker, tmp_path: Path, browser: Any) -> None:  # noqa: F811
    go = tmp_path / "go"
    pipeline = compile_text(textwrap.dedent(PIPELINE).replace("GO", str(go)), source="ui.yaml", base_dir=None).op
    config = test_config(kafka_broker.bootstrap, name="ui", state_dir=str(tmp_path / "state"), executor="local")
    daemon = Daemon(config)
    events = EventCollector(config)
    ui = start("ui", "--daemon", "--brokers", config.brokers, "--prefix", config.prefix, "--port", "0")
    run_id = f"ui-{uuid.uuid4().hex[:8]}"
    try:
        assert ui.stderr is not None
        line = await anyio.to_thread.run_sync(ui.stderr.readline)
        url = re.search(r"(http://\S+/)", line)[1]  # type: ignore[index]
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            with anyio.fail_after(60):
                await daemon.wait_ready()
            await tg.start(events.run)
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))

            def statuses() -> dict[str, str]:
                pairs = browser.execute_script(
                    "return [...document.querySelectorAll('svg g.node')].map(g => [g.dataset.path, g.dataset.status])")
                return dict(pairs)

            def in_browser() -> dict[str, str]:
                wait = WebDriverWait(browser, 40, poll_frequency=0.2)
                browser.get(url)
                link = wait.until(lambda d: [a for a in d.find_elements(By.CSS_SELECTOR, "tr.run a") if run_id in a.text])
                shot(browser, "daemon-1-runs")
                link[0].click()
                seen = wait.until(lambda d: (s := statuses()).get("prepare") == "running" and s)
                shot(browser, "daemon-2-running")
                return seen

            seen = await anyio.to_thread.run_sync(in_browser)
            # every top-level op is drawn (from the op paths of the status view; the ops inside
            # etl and sweep exist once those start)
            assert set(seen) == {"prepare", "etl", "sweep"}, seen
            assert seen["etl"] == seen["sweep"] == "created"
            go.touch()

            def finished() -> dict[str, str]:
                WebDriverWait(browser, 60, poll_frequency=0.2).until(lambda d: statuses().get("sweep") == "succeeded")
                shot(browser, "daemon-3-succeeded")
                return statuses()

            final = await anyio.to_thread.run_sync(finished)
            done = await events.wait_done(run_id, timeout=30)
            tg.cancel_scope.cancel()
        assert done.status == "succeeded"
        # the page changed statuses without a reload, and drew the nested ops as they came
        assert final["prepare"] == final["etl/extract"] == final["etl/load"] == "succeeded", final
    finally:
        if ui.poll() is None:
            ui.terminate()
            ui.wait(timeout=10)
