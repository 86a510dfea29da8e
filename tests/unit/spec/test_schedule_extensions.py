"""flowd's schedule extensions (timezone, catchUp) and its early cron check."""

from __future__ import annotations

import textwrap

from flowd.spec import compile_text

BASE = """
kind: component
name: nightly
schedule: {SCHEDULE}
run: {kind: job, container: {image: busybox, command: [echo]}}
"""


def check(schedule: str):
    return compile_text(textwrap.dedent(BASE.replace("{SCHEDULE}", schedule)), source="s.yaml")


def test_timezone_and_catch_up_reach_the_compiled_schedule():
    result = check('{kind: cron, cron: "30 2 * * *", timezone: Europe/Paris, catchUp: false}')
    assert result.valid
    assert result.op.schedule == {"kind": "cron", "cron": "30 2 * * *", "timezone": "Europe/Paris", "catchUp": False}


def test_unknown_timezone_is_an_error_naming_the_field():
    result = check('{kind: cron, cron: "@daily", timezone: Mars/Olympus}')
    assert not result.valid
    (error,) = result.errors
    assert error.location == "schedule.timezone" and "Mars/Olympus" in error.message


def test_bad_cron_is_a_warning_not_a_verdict_change():
    result = check('{kind: cron, cron: "not a cron"}')
    assert result.valid
    assert any("not a valid cron expression" in w.message for w in result.warnings)
