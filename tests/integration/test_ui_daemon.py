"""``flowd ui --daemon`` in a real headless browser (Debian's chromium through chromium-driver): a
daemon on the real broker runs a pipeline with the local executor, and the UI, reading Kafka (the
compacted ``status`` topic) plus the daemon's state dir for op logs, lists the run, draws every op
and every dependency from the start (the graph the daemon put in the status view), shows statuses
change while it runs, a matrix as a table sortable by params, an op's params and logs, and, with
a token, approves a held op. Screenshots are kept in tests/output/ui/ (git-ignored) as artefacts,
named ``daemon-*.png``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from flowd.spec import compile_text
from tests.integration.k8s_helpers import PodLogScript, untaint_nodes
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
            run: {kind: job, container: {image: x, command: [sh, -c, 'echo "{\\"loss\\": {{ 1 - lr }}}" >> "$FLOWD_METRICS"']}}
        - name: deploy
          dependencies: [sweep]
          isApproved: false
          component:
            run: {kind: job, container: {image: x, command: [sh, -c, 'echo deployed']}}
    """
TOKEN = "ui-test-token"

# on the test cluster kwok plays each pod (flowd.test/* annotations: how long it runs, how it
# ends, the log lines it prints); second fails twice, so it has two attempts' pods
PODS_PIPELINE = """\
    version: 1.1
    kind: component
    name: ui-pods
    run:
      kind: dag
      operations:
        - name: first
          component:
            run:
              kind: job
              environment:
                annotations: {flowd.test/run-for: 11s, flowd.test/log: FIRST_LINES, flowd.test/log-interval: "0.6"}
              container: {image: busybox:1.36, command: [sh, -c, "echo first"]}
        - name: second
          dependencies: [first]
          termination: {maxRetries: 1}
          component:
            run:
              kind: job
              environment:
                annotations:
                  flowd.test/run-for: 1s
                  flowd.test/outcome: fail
                  flowd.test/log: '["second attempt {attempt}: boom"]'
              container: {image: busybox:1.36, command: [sh, -c, "echo second"]}
    """


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
                # and by the last value of their intermediate metric (the status view's metrics)
                click(browser, '#matrix-table th[data-col="metric loss"]')
                losses = browser.execute_script(
                    "const cols = [...document.querySelectorAll('#matrix-table th')].map(th => th.dataset.col);"
                    "const i = cols.indexOf('metric loss');"
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
                # its times, from the status view's op entries
                wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'dd[data-field="finished"]').text != "-")
                assert browser.find_element(By.CSS_SELECTOR, 'dd[data-field="started"]').text != "-"
                shot(browser, "daemon-5-succeeded")
                return statuses(browser), lrs, losses

            final, lrs, losses = await anyio.to_thread.run_sync(held)
            done = await events.wait_done(run_id, timeout=30)
            tg.cancel_scope.cancel()
        assert done.status == "succeeded"
        # the CLI reads the same logs from the daemon's state dir (no snapshot there: a daemon
        # keeps its state on Kafka); -f ends by itself, every attempt having ended
        for extra in ((), ("-f",)):
            logs_cli = subprocess.run([sys.executable, "-m", "flowd", "logs", run_id, *extra, "--state-dir", str(state)],
                                      capture_output=True, text=True, timeout=60, check=False)
            assert logs_cli.returncode == 0, logs_cli.stderr
            assert {"[prepare] preparing rows", "[deploy] deployed"} <= set(logs_cli.stdout.splitlines()), logs_cli.stdout
        assert lrs == [0.1, 0.2, 0.3]
        assert losses == [0.7, 0.8, 0.9]
        # the page changed statuses without a reload
        assert final["prepare"] == final["etl/extract"] == final["etl/load"] == final["deploy"] == "succeeded", final
    finally:
        if ui.poll() is None:
            ui.terminate()
            ui.wait(timeout=10)


@pytest.mark.k8s
async def test_ui_shows_pod_logs_of_a_daemon_run_on_kubernetes(
        kafka_broker, k8s_cluster, k8s_namespace, tmp_path: Path, browser: Any) -> None:  # noqa: F811
    """``flowd ui --daemon --kubeconfig K --namespace NS`` beside a daemon with the k8s executor:
    a clicked op's log is read from its pod through the real pod log API (kwok serves what the
    test plays as each pod's output) and grows on the page while the pod runs; a retried op
    offers each attempt, and each attempt shows its own pod's log."""
    untaint_nodes(k8s_cluster)
    config = test_config(
        kafka_broker.bootstrap, name="uipods", state_dir=str(tmp_path / "state"), executor="k8s",
        executor_config={"kubeconfig": str(k8s_cluster.kubeconfig), "namespace": k8s_namespace,
                         "watch_namespaces": [k8s_namespace], "reconcile_interval": 1.0})
    first = [f"first: line {i}" for i in range(1, 17)]
    pipeline = compile_text(textwrap.dedent(PODS_PIPELINE).replace("FIRST_LINES", json.dumps(json.dumps(first))),
                            source="pods.yaml", base_dir=None).op
    daemon = Daemon(config)
    events = EventCollector(config)
    ui = start("ui", "--daemon", "--brokers", config.brokers, "--prefix", config.prefix, "--port", "0",
               "--kubeconfig", k8s_cluster.kubeconfig, "--namespace", k8s_namespace)
    run_id = f"uipods-{uuid.uuid4().hex[:8]}"
    try:
        url = await anyio.to_thread.run_sync(ui_url, ui)
        async with PodLogScript(k8s_cluster, k8s_namespace), anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            with anyio.fail_after(60):
                await daemon.wait_ready()
            await tg.start(events.run)
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))

            def live() -> tuple[str, str, str]:
                wait = WebDriverWait(browser, 60, poll_frequency=0.2)
                browser.get(f"{url}run?id={run_id}")
                wait.until(lambda d: statuses(browser).get("first") == "running")
                click(browser, 'svg g.node[data-path="first"]')
                # the pod's log on the page while the pod runs: some lines, not all yet ...
                early = wait.until(lambda d: (t := d.find_element(By.ID, "logs").text) and "first: line 1" in t and t)
                status = statuses(browser)["first"]
                shot(browser, "daemon-pods-1-running")
                # ... and the rest appear without a reload
                full = wait.until(lambda d: (t := d.find_element(By.ID, "logs").text) and "first: line 16" in t and t)
                return early, status, full

            early, status_then, full = await anyio.to_thread.run_sync(live)
            done = await events.wait_done(run_id, timeout=90)

            def attempts() -> tuple[list[str], str, str]:
                wait = WebDriverWait(browser, 60, poll_frequency=0.2)
                wait.until(lambda d: statuses(browser).get("second") == "failed")
                click(browser, 'svg g.node[data-path="second"]')
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attempt option")) == 2)
                options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#attempt option")]
                latest = wait.until(lambda d: (t := d.find_element(By.ID, "logs").text) and "boom" in t and t)
                Select(browser.find_element(By.ID, "attempt")).select_by_visible_text("attempt 1")
                one = wait.until(lambda d: (t := d.find_element(By.ID, "logs").text) and "attempt 1" in t and t)
                shot(browser, "daemon-pods-2-attempts")
                return options, latest, one

            options, latest, one = await anyio.to_thread.run_sync(attempts)
            tg.cancel_scope.cancel()
        assert status_then == "running"
        assert "first: line 16" not in early, "the log was read only after the pod ended"
        assert full.splitlines() == first
        assert done.status == "failed"
        assert options == ["attempt 1", "attempt 2"]
        assert latest.splitlines() == ["second attempt 2: boom"]
        assert one.splitlines() == ["second attempt 1: boom"]
    finally:
        if ui.poll() is None:
            ui.terminate()
            ui.wait(timeout=10)
