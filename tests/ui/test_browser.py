"""The web UI in a real headless browser (Debian's chromium through chromium-driver, driven by
selenium): the runs list loads, the run page draws every DAG node, statuses change while the
pipeline runs, a matrix is a sortable table, an op shows its logs. Screenshots are kept in
tests/output/ui/ (git-ignored) as artefacts."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.ui.browser import browser, click, shot, start, statuses, ui_url  # noqa: F401 - browser is a fixture

PIPELINE = """\
    version: 1.1
    kind: component
    name: ui-demo
    run:
      kind: dag
      operations:
        - name: prepare
          component:
            run: {kind: job, container: {image: x, command: [sh, -c, 'echo preparing data; while [ ! -f GO ]; do sleep 0.1; done; echo prepared']}}
        - name: etl
          dependencies: [prepare]
          component:
            run:
              kind: dag
              operations:
                - name: extract
                  component: {run: {kind: job, container: {image: x, command: [sh, -c, 'sleep 0.5']}}}
                - name: load
                  dependencies: [extract]
                  component: {run: {kind: job, container: {image: x, command: [sh, -c, 'true']}}}
        - name: sweep
          dependencies: [etl]
          matrix:
            kind: grid
            params: {lr: {kind: choice, value: [0.3, 0.1, 0.2]}}
          component:
            inputs: [{name: lr, type: float}]
            outputs: [{name: score, type: float}]
            run:
              kind: job
              container:
                image: x
                # a loss curve whose last value ranks the children opposite to lr: 0.3 -> 0.7
                command: [sh, -c, 'echo "{\\"step\\": 1, \\"loss\\": 2}" >> "$FLOWD_METRICS";
                  echo "{\\"step\\": 2, \\"loss\\": {{ 1 - lr }}}" >> "$FLOWD_METRICS";
                  echo "{\\"score\\": {{ lr }}}" > "$FLOWD_OUTPUTS"']
    """


def column(driver: Any, name: str) -> list[float]:
    """The numbers of a column of the matrix table, top to bottom."""
    return driver.execute_script(
        "const cols = [...document.querySelectorAll('#matrix-table th')].map(th => th.dataset.col);"
        "const i = cols.indexOf(arguments[0]);"
        "return [...document.querySelectorAll('#matrix-table tbody tr')].map(tr => Number(tr.children[i].textContent))",
        name)


def test_ui_shows_runs_the_dag_and_live_statuses(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    file = tmp_path / "ui-demo.yaml"
    go = tmp_path / "go"  # prepare runs until the test has seen it running
    file.write_text(textwrap.dedent(PIPELINE).replace("GO", str(go)))
    state = tmp_path / "state"
    ui = start("ui", "--state-dir", state, "--port", "0")
    run = None
    try:
        url = ui_url(ui)
        run = start("run", file, "--state-dir", state)
        wait = WebDriverWait(browser, 40, poll_frequency=0.1)
        browser.get(url)
        row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.run a"))[0]
        shot(browser, "1-runs")
        # the created time names its zone
        created = browser.find_elements(By.CSS_SELECTOR, "tr.run td")[3].text
        assert re.search(r"\b(UTC|GMT[+-]?\d*|[A-Z]{3,4})$", created), created
        row.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg g.node"))

        seen = wait.until(lambda d: (s := statuses(browser)).get("prepare") == "running" and s)
        shot(browser, "2-running")
        # every op of the DAG is drawn, nested ones inside their group
        assert {"prepare", "etl", "etl/extract", "etl/load", "sweep"} <= set(seen)
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg path.edge")) == 3
        # statuses change while it runs, without reloading the page
        go.touch()
        wait.until(lambda d: statuses(browser).get("prepare") == "succeeded")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda d: statuses(browser).get("sweep") == "succeeded")
        shot(browser, "3-succeeded")

        # a matrix is a table of its children, sortable by params and outputs
        click(browser, 'svg g.node[data-path="sweep"]')
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#matrix-table tbody tr"))
        assert len(rows) == 3
        click(browser, '#matrix-table th[data-col="output score"]')
        scores = browser.execute_script(
            "const cols = [...document.querySelectorAll('#matrix-table th')].map(th => th.dataset.col);"
            "const i = cols.indexOf('output score');"
            "return [...document.querySelectorAll('#matrix-table tbody tr')].map(tr => Number(tr.children[i].textContent))")
        assert scores == [0.1, 0.2, 0.3]
        # and by the last value of each child's intermediate metric ($FLOWD_METRICS), both ways
        assert column(browser, "param lr") == [0.1, 0.2, 0.3]
        click(browser, '#matrix-table th[data-col="metric loss"]')
        assert column(browser, "metric loss") == [0.7, 0.8, 0.9]
        assert column(browser, "param lr") == [0.3, 0.2, 0.1]
        click(browser, '#matrix-table th[data-col="metric loss"]')
        assert column(browser, "metric loss") == [0.9, 0.8, 0.7]
        shot(browser, "4-matrix")

        # an op's details and logs
        click(browser, 'svg g.node[data-path="prepare"]')
        wait.until(lambda d: "prepared" in d.find_element(By.ID, "logs").text)
        assert browser.find_element(By.CSS_SELECTOR, 'dd[data-field="status"]').text == "succeeded"
        # a nested DAG collapses to one box
        click(browser, 'svg g.node[data-path="etl"]')
        wait.until(lambda d: "etl/extract" not in statuses(browser))
        shot(browser, "5-details")
        # read-only: no action buttons
        assert browser.find_elements(By.CSS_SELECTOR, "#actions button") == []
        assert run.wait(timeout=30) == 0
    finally:
        for proc in (run, ui):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
