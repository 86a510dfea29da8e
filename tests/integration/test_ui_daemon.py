"""``flowd ui --daemon`` in a real headless browser (Debian's chromium through chromium-driver): a
daemon on the real broker runs a pipeline with the local executor, and the UI, reading Kafka (the
compacted ``status`` topic) plus the daemon's state dir for op logs, lists the run, draws every op
and every dependency from the start (the graph the daemon put in the status view), shows statuses
change while it runs, a matrix as a table sortable by params, an op's params and logs, and, with
a token, approves a held op. Screenshots are kept in tests/output/ui/ (git-ignored) as artefacts,
named ``daemon-*.png``."""

from __future__ import annotations

import os
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
from tests.ui.browser import browser, click, shot, start, statuses, ui_url  # noqa: F401 - browser is a fixture

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
            run: {kind: job, container: {image: x, command: [sh, -c, 'echo preparing rows; while [ ! -f GO ]; do sleep 0.1; done']}}
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
          matrix: {kind: grid, params: {lr: {kind: choice, value: [0.3, 0.1, 0.2]}}}
          component:
            inputs: [{name: lr, type: float}]
            run: {kind: job, container: {image: x, command: [sh, -c, 'true']}}
        - name: deploy
          dependencies: [sweep]
          isApproved: false
          component:
            run: {kind: job, container: {image: x, command: [sh, -c, 'echo deployed']}}
    """
TOKEN = "ui-test-token"


async def test_ui_shows_a_daemon_run_live_over_kafka(kafka_broker, tmp_path: Path, browser: Any) -> None:  # noqa: F811
    go = tmp_path / "go"
    pipeline = compile_text(textwrap.dedent(PIPELINE).replace("GO", str(go)), source="ui.yaml", base_dir=None).op
    state = tmp_path / "state"
    config = test_config(kafka_broker.bootstrap, name="ui", state_dir=str(state), executor="local")
    daemon = Daemon(config)
    events = EventCollector(config)
    ui = start("ui", "--daemon", "--brokers", config.brokers, "--prefix", config.prefix, "--port", "0",
               "--state-dir", state, "--allow-actions", env={**os.environ, "FLOWD_UI_TOKEN": TOKEN})
    run_id = f"ui-{uuid.uuid4().hex[:8]}"
    try:
        url = await anyio.to_thread.run_sync(ui_url, ui)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            with anyio.fail_after(60):
                await daemon.wait_ready()
            await tg.start(events.run)
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))

            def running() -> tuple[dict[str, str], int, str]:
                wait = WebDriverWait(browser, 40, poll_frequency=0.2)
                browser.get(url)
                link = wait.until(lambda d: [a for a in d.find_elements(By.CSS_SELECTOR, "tr.run a") if run_id in a.text])
                shot(browser, "daemon-1-runs")
                link[0].click()
                seen = wait.until(lambda d: (s := statuses(browser)).get("prepare") == "running" and s)
                edges = len(browser.find_elements(By.CSS_SELECTOR, "svg path.edge"))
                # the running op's log, read from the daemon's state dir
                click(browser, 'svg g.node[data-path="prepare"]')
                logs = wait.until(lambda d: (t := d.find_element(By.ID, "logs").text) and "preparing" in t and t)
                shot(browser, "daemon-2-running")
                return seen, edges, logs

            seen, edges, logs = await anyio.to_thread.run_sync(running)
            # every op and every dependency is drawn before the ops inside etl and sweep exist:
            # the graph comes from the compiled pipeline (the status view's kinds and edges)
            assert {"prepare", "etl", "etl/extract", "etl/load", "sweep", "deploy"} <= set(seen), seen
            assert seen["etl"] == seen["sweep"] == "created"
            assert edges == 4  # prepare->etl, etl->sweep, sweep->deploy, etl/extract->etl/load
            assert "preparing rows" in logs
            go.touch()

            def held() -> tuple[dict[str, str], list[float]]:
                wait = WebDriverWait(browser, 60, poll_frequency=0.2)
                wait.until(lambda d: statuses(browser).get("sweep") == "succeeded")
                # the matrix's children as a table, sorted by their param
                click(browser, 'svg g.node[data-path="sweep"]')
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#matrix-table tbody tr")) == 3)
                click(browser, '#matrix-table th[data-col="param lr"]')
                lrs = browser.execute_script(
                    "const cols = [...document.querySelectorAll('#matrix-table th')].map(th => th.dataset.col);"
                    "const i = cols.indexOf('param lr');"
                    "return [...document.querySelectorAll('#matrix-table tbody tr')].map(tr => Number(tr.children[i].textContent))")
                shot(browser, "daemon-3-matrix")
                # deploy waits for an approval: with actions enabled, its details offer the button
                click(browser, 'svg g.node[data-path="deploy"]')
                wait.until(lambda d: d.find_elements(By.ID, "action-approve"))
                shot(browser, "daemon-4-approval")
                browser.execute_script(f"sessionStorage.setItem('flowd-token', '{TOKEN}')")
                click(browser, "#action-approve")
                wait.until(lambda d: statuses(browser).get("deploy") == "succeeded")
                wait.until(lambda d: "deployed" in d.find_element(By.ID, "logs").text)
                shot(browser, "daemon-5-succeeded")
                return statuses(browser), lrs

            final, lrs = await anyio.to_thread.run_sync(held)
            done = await events.wait_done(run_id, timeout=30)
            tg.cancel_scope.cancel()
        assert done.status == "succeeded"
        assert lrs == [0.1, 0.2, 0.3]
        # the page changed statuses without a reload
        assert final["prepare"] == final["etl/extract"] == final["etl/load"] == final["deploy"] == "succeeded", final
    finally:
        if ui.poll() is None:
            ui.terminate()
            ui.wait(timeout=10)
