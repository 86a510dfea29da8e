"""Schedules (POLYFLOW §8.1): ticks come from timers, never from a clock inside the engine."""

from __future__ import annotations

import datetime as dt

import pytest

from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, SetTimer, StartOp, Stop, Submit, TimerFired
from flowd.engine.schedule import ScheduleError, next_tick, to_seconds
from tests.unit.engine.build import dag, job

T0 = dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC).timestamp()


def scheduled(schedule: dict):
    return dag("nightly", [job("extract"), job("load", upstream=["extract"])], schedule=schedule)


def test_interval_ticks_from_start_without_start_at():
    s = {"kind": "interval", "frequency": 600}
    assert next_tick(s, created_at=T0, last=None, count=0, now=T0) == T0
    assert next_tick(s, created_at=T0, last=T0, count=1, now=T0) == T0 + 600


@pytest.mark.parametrize("text,seconds", [(90, 90.0), ("PT1H30M", 5400.0), ("01:00:00", 3600.0), ("1 00:00:10", 86410.0)])
def test_frequency_forms(text, seconds):
    assert to_seconds(text) == seconds


def test_cron_respects_timezone_and_dst():
    # Europe/Paris switches to summer time on 2026-03-29: 02:30 local does not exist that night
    s = {"kind": "cron", "cron": "30 2 * * *", "timezone": "Europe/Paris"}
    first = next_tick(s, created_at=T0, last=None, count=0, now=T0)
    assert dt.datetime.fromtimestamp(first, dt.UTC) >= dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
    utc = next_tick({"kind": "cron", "cron": "30 2 * * *"}, created_at=T0, last=None, count=0, now=T0)
    assert utc == dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.UTC).timestamp()
    assert first != utc


def test_max_runs_end_at_and_datetime():
    s = {"kind": "interval", "frequency": 60, "maxRuns": 2}
    assert next_tick(s, created_at=T0, last=T0 + 60, count=2, now=T0) is None
    s = {"kind": "interval", "frequency": 60, "endAt": dt.datetime.fromtimestamp(T0 + 90, dt.UTC)}
    assert next_tick(s, created_at=T0, last=T0 + 60, count=2, now=T0 + 61) is None
    s = {"kind": "datetime", "startAt": "2026-04-01T10:00:00Z"}
    at = next_tick(s, created_at=T0, last=None, count=0, now=T0)
    assert at == dt.datetime(2026, 4, 1, 10, tzinfo=dt.UTC).timestamp()
    assert next_tick(s, created_at=T0, last=at, count=1, now=at) is None


def test_bad_cron_is_a_schedule_error():
    with pytest.raises(ScheduleError, match="invalid cron"):
        next_tick({"kind": "cron", "cron": "not a cron"}, created_at=T0, last=None, count=0, now=T0)


def drive(engine: Engine, commands, now: float):
    """Complete every started op immediately; return the timers that were set."""
    timers = {}
    queue = list(commands)
    while queue:
        c = queue.pop(0)
        if isinstance(c, StartOp):
            queue.extend(engine.handle(OpStatus("s", c.path, c.attempt, "succeeded", now)))
        elif isinstance(c, SetTimer):
            timers[c.timer_id] = c.at
    return timers


def test_interval_schedule_runs_one_child_per_tick_up_to_max_runs():
    engine = Engine()
    pipeline = scheduled({"kind": "interval", "frequency": 3600, "maxRuns": 3})
    timers = drive(engine, engine.handle(Submit("s", pipeline, T0)), T0)
    nodes = engine.runs["s"].nodes
    assert nodes["tick-0/load"].status == "succeeded"
    assert timers == {"tick:#1": T0 + 3600}
    # a redelivered or early firing of another tick does nothing
    assert engine.handle(TimerFired("s", "tick:#5", T0 + 10)) == []
    timers = drive(engine, engine.handle(TimerFired("s", "tick:#1", T0 + 3600)), T0 + 3600)
    assert timers == {"tick:#2": T0 + 7200}
    drive(engine, engine.handle(TimerFired("s", "tick:#2", T0 + 7200)), T0 + 7200)
    assert engine.runs["s"].nodes[""].status == "succeeded"
    assert [n.schedule_at for p, n in nodes.items() if p.startswith("tick-") and "/" not in p] == [T0, T0 + 3600, T0 + 7200]


def test_missed_ticks_catch_up_after_downtime():
    engine = Engine()
    pipeline = scheduled({"kind": "interval", "frequency": 60, "maxRuns": 4})
    drive(engine, engine.handle(Submit("s", pipeline, T0)), T0)
    # the daemon was down for 200 s: the tick-1 timer fires late; ticks 1..3 are all overdue
    drive(engine, engine.handle(TimerFired("s", "tick:#1", T0 + 200)), T0 + 200)
    children = [p for p in engine.runs["s"].nodes if p.startswith("tick-") and "/" not in p]
    assert children == ["tick-0", "tick-1", "tick-2", "tick-3"]
    assert engine.runs["s"].nodes[""].status == "succeeded"


def test_catch_up_false_skips_missed_ticks():
    engine = Engine()
    pipeline = scheduled({"kind": "interval", "frequency": 60, "catchUp": False})
    drive(engine, engine.handle(Submit("s", pipeline, T0)), T0)
    timers = drive(engine, engine.handle(TimerFired("s", "tick:#1", T0 + 200)), T0 + 200)
    assert engine.runs["s"].nodes["tick-1"].schedule_at == T0 + 180
    assert timers == {"tick:#2": T0 + 240}


def test_depends_on_past_waits_for_the_previous_child():
    engine = Engine()
    pipeline = scheduled({"kind": "interval", "frequency": 60, "dependsOnPast": True, "maxRuns": 2})
    commands = engine.handle(Submit("s", pipeline, T0))
    assert not any(isinstance(c, SetTimer) for c in commands)  # nothing armed while tick-0 runs
    timers = drive(engine, commands, T0 + 5)
    assert timers == {"tick:#1": T0 + 60}


def test_stopping_a_schedule_cancels_its_next_tick():
    engine = Engine()
    drive(engine, engine.handle(Submit("s", scheduled({"kind": "interval", "frequency": 60}), T0)), T0)
    commands = engine.handle(Stop("s", T0 + 1))
    assert any(type(c).__name__ == "CancelTimer" and c.timer_id == "tick:#1" for c in commands)
    assert engine.runs["s"].nodes[""].status == "stopped"
    assert engine.handle(TimerFired("s", "tick:#1", T0 + 60)) == []
