"""When each occurrence of a schedule is due. Every date is computed from the start and
the occurrence's number, never from the previous date, so a schedule never drifts: a
monthly one started on 31 January is due on 28 (or 29) February and again on 31 March."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from handwork_payments.models import Interval

_DAYS = {Interval.WEEKLY: 7, Interval.BIWEEKLY: 14}


def due_at(starts_at: datetime, interval: Interval, number: int) -> datetime:
    """The due time of occurrence `number` (1 is `starts_at` itself)."""
    assert number >= 1
    steps = number - 1
    if Interval(interval) is not Interval.MONTHLY:
        return starts_at + timedelta(days=_DAYS[Interval(interval)] * steps)
    months = starts_at.month - 1 + steps
    year, month = starts_at.year + months // 12, months % 12 + 1
    # The start's day of month, or the month's last day when it has fewer days.
    day = min(starts_at.day, calendar.monthrange(year, month)[1])
    return starts_at.replace(year=year, month=month, day=day)
