"""Tick computation of schedules (POLYFLOW §8.1): pure functions of the schedule and times.

A schedule run creates one child per tick. The next tick is computed from the previous tick (not
from the clock), so after downtime the missed ticks are still run, one after another, until the
schedule has caught up — Polyaxon's rule. ``catchUp: false`` (a flowd extension) skips ticks that
are already in the past when the schedule looks for its next one, except the most recent.

Fields (camelCase as written): ``kind`` (cron | interval | datetime), ``cron`` (5 fields or an
``@hourly``-style preset), ``timezone`` (flowd extension, IANA name, cron only; default UTC),
``frequency`` (interval: seconds, ``PT1H``, ``01:00:00``), ``startAt``, ``endAt``, ``maxRuns``,
``dependsOnPast``, ``catchUp``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from flowd.spec.cron import normalize


class ScheduleError(ValueError):
    pass



_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def to_epoch(value: Any) -> float | None:
    """A datetime, date, ISO string or epoch number as epoch seconds (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ScheduleError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleError(f"not a date/time: {value!r}") from None
    else:
        raise ScheduleError(f"not a time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def to_seconds(value: Any) -> float:
    """An interval ``frequency``: seconds, ISO-8601 duration or ``[D ]HH:MM[:SS]``."""
    if isinstance(value, bool):
        raise ScheduleError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip()
        match = _ISO_DURATION.match(text)
        if match and text != "P" and text != "PT":
            parts = {k: float(v) for k, v in match.groupdict().items() if v}
            seconds = parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
        else:
            days = 0.0
            if " " in text:
                day_text, text = text.split(" ", 1)
                days = float(day_text)
            pieces = text.split(":")
            if len(pieces) not in (2, 3):
                raise ScheduleError(f"not a duration: {value!r}")
            try:
                numbers = [float(p) for p in pieces] + [0.0] * (3 - len(pieces))
            except ValueError:
                raise ScheduleError(f"not a duration: {value!r}") from None
            seconds = days * 86400 + numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    else:
        raise ScheduleError(f"not a duration: {value!r}")
    if seconds <= 0:
        raise ScheduleError(f"interval frequency must be positive, got {value!r}")
    return seconds


def _cron_after(expr: str, tz_name: str | None, after: float) -> float:
    expr = normalize(expr)
    try:
        tz = ZoneInfo(tz_name) if tz_name else dt.UTC
    except Exception:  # noqa: BLE001 - ZoneInfo raises several kinds for a bad name; all mean "unknown"
        raise ScheduleError(f"unknown timezone {tz_name!r}") from None
    if not croniter.is_valid(expr):
        raise ScheduleError(f"invalid cron expression {expr!r}")
    start = dt.datetime.fromtimestamp(after, tz)
    following: dt.datetime = croniter(expr, start).get_next(dt.datetime)
    return following.timestamp()


def _cron_before(expr: str, tz_name: str | None, moment: float) -> float:
    """The latest cron time at or before ``moment``."""
    expr = normalize(expr)
    tz = ZoneInfo(tz_name) if tz_name else dt.UTC
    if croniter.match(expr, dt.datetime.fromtimestamp(moment, tz)):
        return moment
    previous: dt.datetime = croniter(expr, dt.datetime.fromtimestamp(moment, tz)).get_prev(dt.datetime)
    return previous.timestamp()


def next_tick(schedule: dict[str, Any], *, created_at: float, last: float | None, count: int,
              now: float) -> float | None:
    """When the next child is due, or None when the schedule is over.

    ``last`` is the previous child's tick (None before the first), ``count`` the children so far.
    """
    kind = schedule.get("kind")
    max_runs = schedule.get("maxRuns")
    if max_runs is not None and count >= int(max_runs):
        return None
    start_at = to_epoch(schedule.get("startAt"))
    end_at = to_epoch(schedule.get("endAt"))
    if kind == "datetime":
        # [FLOWD] exactly one execution (the reference never finishes a datetime schedule)
        if count:
            return None
        if start_at is None:
            raise ScheduleError("a datetime schedule needs startAt")
        return start_at
    if end_at is not None and now >= end_at:
        return None
    catch_up = schedule.get("catchUp", True) is not False
    if kind == "interval":
        frequency = to_seconds(schedule.get("frequency"))
        base = start_at if start_at is not None else created_at
        if last is None or last < base:
            k = 0
        else:
            quotient = (last - base) / frequency
            k = int(quotient) + 1 if quotient == int(quotient) else math.ceil(quotient)
        tick = base + k * frequency
        if not catch_up and tick < now:
            tick = base + math.floor((now - base) / frequency) * frequency
            if last is not None and tick <= last:
                tick += frequency
    elif kind == "cron":
        expr = schedule.get("cron")
        if not isinstance(expr, str):
            raise ScheduleError("a cron schedule needs a cron expression")
        tz_name = schedule.get("timezone")
        if last is None and start_at is not None:
            tick = start_at
        else:
            tick = _cron_after(expr, tz_name, last if last is not None else created_at)
        if not catch_up and tick < now:
            tick = max(tick, _cron_before(expr, tz_name, now))
    else:
        raise ScheduleError(f"unknown schedule kind {kind!r}")
    if end_at is not None and tick > end_at:
        return None
    return tick
