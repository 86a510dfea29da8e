"""The daemon's stderr is JSON lines only: a library's stdlib log record (aiokafka's transient
``GroupCoordinatorNotAvailableError`` at start-up was a bare text line) is rendered like flowd's
own. Run in a subprocess: logging's configuration is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging, structlog
from flowd.cli.logsetup import configure_logging
configure_logging("info", json_stdlib=True)
logging.getLogger("aiokafka.consumer.group_coordinator").error("Group Coordinator Request failed: %s", "[Error 15]")
structlog.get_logger("flowd").info("daemon_started", executor="local")
"""


def test_the_daemon_logs_library_records_as_json_lines() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout == ""
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(x["event"], x["level"]) for x in lines] == [
        ("Group Coordinator Request failed: [Error 15]", "error"), ("daemon_started", "info")]
    assert lines[0]["logger"] == "aiokafka.consumer.group_coordinator" and "timestamp" in lines[0]
