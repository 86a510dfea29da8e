"""The headless browser the UI tests share (Debian's chromium through chromium-driver, driven
by selenium), and the helpers every UI test needs: start ``flowd ui``, read the drawn DAG, click
an element the page may redraw, keep a screenshot in tests/output/ui/ (git-ignored) as an
artefact. Importing this module skips the importing test module when chromium is missing (and
fails in CI, which must have it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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

__all__ = ["browser", "click", "shot", "start", "statuses", "ui_url"]


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


def start(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m flowd ARGS`` from the repository root, stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-m", "flowd", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def ui_url(ui: subprocess.Popen[str]) -> str:
    """The address a started ``flowd ui`` prints on its first stderr line."""
    assert ui.stderr is not None
    line = ui.stderr.readline()
    found = re.search(r"(http://\S+/)", line)
    assert found, line
    return found[1]


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def statuses(driver: Any) -> dict[str, str]:
    """Op path -> status of every drawn node, read in one script (the page redraws the DAG
    when statuses change)."""
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('svg g.node')].map(g => [g.dataset.path, g.dataset.status])")
    return dict(pairs)


def click(driver: Any, selector: str) -> None:
    for _ in range(20):  # the element may be redrawn between finding and clicking it
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"could not click {selector}")
