"""Constants for comparisons, and calendar arithmetic for ``older_than`` / ``younger_than``."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from ghostpii.errors import GhostError

__all__ = ["Constant", "const_spec", "cutoff_spec", "shift_years"]

Constant = int | float | dt.date | dt.datetime

_EPOCH = dt.date(1970, 1, 1)
_EPOCH_DT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _us(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - _EPOCH_DT
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def const_spec(value: Any) -> dict[str, Any]:
    """The wire form of a comparison constant; wrong types fail here, before anything runs."""
    if isinstance(value, bool):
        return {"kind": "number", "i": int(value), "repr": repr(value)}
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise GhostError(f"comparison constant {value} does not fit in 64 bits")
        return {"kind": "number", "i": value, "repr": repr(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise GhostError(f"comparison constant {value} is not a finite number")
        return {"kind": "number", "f": value, "repr": repr(value)}
    if isinstance(value, dt.datetime):
        us = _us(value)
        return {"kind": "datetime", "us": us, "i": us // 86_400_000_000, "repr": value.isoformat()}
    if isinstance(value, dt.date):
        days = (value - _EPOCH).days
        return {"kind": "date", "i": days, "us": days * 86_400_000_000, "repr": value.isoformat()}
    raise GhostError(
        f"cannot compare an encrypted column with {value!r} of type {type(value).__name__}; "
        "pass an int, a float, a datetime.date or a datetime.datetime"
    )


def shift_years(d: dt.date, years: int) -> dt.date:
    """``d`` moved by whole calendar ``years``; Feb 29 becomes Feb 28 in non-leap years."""
    y = d.year + years
    if not 1 <= y <= 9999:
        raise GhostError(f"{d.isoformat()} shifted by {years} years leaves the supported calendar")
    day = d.day
    if d.month == 2 and day == 29 and not calendar.isleap(y):
        day = 28
    return d.replace(year=y, day=day)


def cutoff_spec(years: int, as_of: dt.date | dt.datetime | None) -> dict[str, Any]:
    """The latest birth date (and instant) of someone who is at least ``years`` old at ``as_of``.

    Age counts completed years: someone born on Feb 29 has their birthday on Mar 1 in
    non-leap years. ``as_of`` defaults to today (dates) and now (datetimes), in UTC.
    """
    if isinstance(years, bool) or not isinstance(years, int) or years < 0:
        raise GhostError(f"years must be a non-negative int, got {years!r}")
    if as_of is None:
        now = dt.datetime.now(dt.UTC)
        day, instant = now.date(), now
    elif isinstance(as_of, dt.datetime):
        day, instant = as_of.date(), as_of
    elif isinstance(as_of, dt.date):
        day, instant = as_of, dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.UTC)
    else:
        raise GhostError(f"as_of must be a date, a datetime or None, got {as_of!r}")
    cut_day = shift_years(day, -years)
    cut_instant = instant.replace(year=cut_day.year, month=cut_day.month, day=cut_day.day)
    return {
        "kind": "date",
        "i": (cut_day - _EPOCH).days,
        "us": _us(cut_instant),
        "repr": f"older_than({years}, as_of={day.isoformat()})",
    }
