"""Due dates come from the start and the number, never from the previous date."""

from __future__ import annotations

from datetime import UTC, datetime

from handwork_payments.models import Interval
from handwork_payments.recurring.dates import due_at


def test_a_month_end_start_keeps_its_day_where_the_month_has_it() -> None:
    start = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    days = [due_at(start, Interval.MONTHLY, n).date().isoformat() for n in range(1, 14)]
    assert days == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30",
        "2027-07-31", "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31",
        "2028-01-31",
    ]  # fmt: skip
    assert due_at(start, Interval.MONTHLY, 2).time() == start.time()


def test_a_leap_february_gets_its_29th() -> None:
    start = datetime(2028, 1, 31, tzinfo=UTC)
    assert due_at(start, Interval.MONTHLY, 2) == datetime(2028, 2, 29, tzinfo=UTC)
    assert due_at(start, Interval.MONTHLY, 3) == datetime(2028, 3, 31, tzinfo=UTC)
    assert due_at(datetime(2027, 2, 28, tzinfo=UTC), Interval.MONTHLY, 2).day == 28


def test_weeks_and_fortnights() -> None:
    start = datetime(2027, 12, 27, 8, tzinfo=UTC)
    assert due_at(start, Interval.WEEKLY, 2) == datetime(2028, 1, 3, 8, tzinfo=UTC)
    assert due_at(start, Interval.BIWEEKLY, 3) == datetime(2028, 1, 24, 8, tzinfo=UTC)
    assert due_at(start, Interval.WEEKLY, 1) == start
