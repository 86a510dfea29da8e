"""The web UI in a real headless browser (Debian's chromium through chromium-driver, driven by
selenium): the runs list loads, the run page draws every DAG node, statuses change while the
pipeline runs, a matrix is a sortable table, an op shows its logs. Screenshots are kept in
tests/output/ui/ (git-ignored) as artefacts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "output" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must have chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

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
              container: {image: x, command: [sh, -c, 'echo "{\\"score\\": {{ lr }}}" > "$FLOWD_OUTPUTS"']}
    """


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "flowd", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_ui_shows_runs_the_dag_and_live_statuses(tmp_path: Path, browser: Any) -> None:
    file = tmp_path / "ui-demo.yaml"
    go = tmp_path / "go"  # prepare runs until the test has seen it running
    file.write_text(textwrap.dedent(PIPELINE).replace("GO", str(go)))
    state = tmp_path / "state"
    ui = start("ui", "--state-dir", state, "--port", "0")
    run = None
    try:
        assert ui.stderr is not None
        url = re.search(r"(http://\S+/)", ui.stderr.readline())[1]  # type: ignore[index]
        run = start("run", file, "--state-dir", state)
        wait = WebDriverWait(browser, 40, poll_frequency=0.1)
        browser.get(url)
        row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.run a"))[0]
        shot(browser, "1-runs")
        row.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg g.node"))

        def statuses() -> dict[str, str]:
            # read in one script: the page redraws the DAG when statuses change
            pairs = browser.execute_script(
                "return [...document.querySelectorAll('svg g.node')].map(g => [g.dataset.path, g.dataset.status])")
            return dict(pairs)

        def click(selector: str) -> None:
            for _ in range(20):  # the element may be redrawn between finding and clicking it
                try:
                    browser.find_element(By.CSS_SELECTOR, selector).click()
                    return
                except StaleElementReferenceException:
                    time.sleep(0.05)
            raise AssertionError(f"could not click {selector}")

        seen = wait.until(lambda d: (s := statuses()).get("prepare") == "running" and s)
        shot(browser, "2-running")
        # every op of the DAG is drawn, nested ones inside their group
        assert {"prepare", "etl", "etl/extract", "etl/load", "sweep"} <= set(seen)
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg path.edge")) == 3
        # statuses change while it runs, without reloading the page
        go.touch()
        wait.until(lambda d: statuses().get("prepare") == "succeeded")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda d: statuses().get("sweep") == "succeeded")
        shot(browser, "3-succeeded")

        # a matrix is a table of its children, sortable by params and outputs
        click('svg g.node[data-path="sweep"]')
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#matrix-table tbody tr"))
        assert len(rows) == 3
        click('#matrix-table th[data-col="output score"]')
        scores = browser.execute_script(
            "const cols = [...document.querySelectorAll('#matrix-table th')].map(th => th.dataset.col);"
            "const i = cols.indexOf('output score');"
            "return [...document.querySelectorAll('#matrix-table tbody tr')].map(tr => Number(tr.children[i].textContent))")
        assert scores == [0.1, 0.2, 0.3]
        shot(browser, "4-matrix")

        # an op's details and logs
        click('svg g.node[data-path="prepare"]')
        wait.until(lambda d: "prepared" in d.find_element(By.ID, "logs").text)
        assert browser.find_element(By.CSS_SELECTOR, 'dd[data-field="status"]').text == "succeeded"
        # a nested DAG collapses to one box
        click('svg g.node[data-path="etl"]')
        wait.until(lambda d: "etl/extract" not in statuses())
        shot(browser, "5-details")
        # read-only: no action buttons
        assert browser.find_elements(By.CSS_SELECTOR, "#actions button") == []
        assert run.wait(timeout=30) == 0
    finally:
        for proc in (run, ui):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
