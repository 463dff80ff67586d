"""ISO weeks in the organisation's time zone: around New Year (2026 has 53 weeks), when the
zone's date differs from UTC's, and across DST changes. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.bookingtime_api.weeks import check_week, iso_week, iso_weeks, week_bounds, weeks_in_year

BERLIN = "Europe/Berlin"


def test_2026_has_53_weeks_and_the_new_year_starts_in_week_53() -> None:
    assert [weeks_in_year(y) for y in (2025, 2026, 2027)] == [52, 53, 52]
    # Thursday 2026-12-31 and Friday 2027-01-01 are in 2026-W53; Monday 2027-01-04 is 2027-W01.
    new_year = datetime(2027, 1, 1, 12, tzinfo=UTC)
    assert iso_week(new_year, BERLIN) == (2026, 53)
    assert iso_week(new_year, BERLIN, weeks_ahead=1) == (2027, 1)
    assert iso_weeks(datetime(2026, 12, 21, 9, tzinfo=UTC), BERLIN, 4) == [
        (2026, 52),
        (2026, 53),
        (2027, 1),
        (2027, 2),
    ]
    # And the year before: Monday 2025-12-29 is already 2026-W01.
    assert iso_week(datetime(2025, 12, 29, 9, tzinfo=UTC), BERLIN) == (2026, 1)


def test_the_week_is_the_organisations_not_utcs() -> None:
    # Sunday 2027-01-03 23:30 UTC is Monday 00:30 in Berlin: the new week there already.
    late_sunday = datetime(2027, 1, 3, 23, 30, tzinfo=UTC)
    assert late_sunday.isocalendar()[:2] == (2026, 53)
    assert iso_week(late_sunday, BERLIN) == (2027, 1)
    # ...and still the old week in New York.
    assert iso_week(late_sunday, "America/New_York") == (2026, 53)
    # In Auckland (UTC+13 in January) Sunday morning UTC is Sunday evening: same week.
    assert iso_week(datetime(2027, 1, 3, 5, tzinfo=UTC), ZoneInfo("Pacific/Auckland")) == (
        2026,
        53,
    )


def test_weeks_ahead_count_calendar_weeks_across_dst_changes() -> None:
    # Monday 2026-03-30 00:30 in Berlin (summer time since Sunday 02:00) is Sunday 22:30 UTC.
    after_spring = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)
    assert iso_week(after_spring, BERLIN) == (2026, 14)
    # 168 hours earlier it was Sunday 23:30 in Berlin (the week had only 167 hours): counting
    # weeks by the clock would skip week 13; counting by dates does not.
    assert iso_week(after_spring - timedelta(weeks=1), BERLIN) == (2026, 12)
    assert iso_week(after_spring, BERLIN, weeks_ahead=-1) == (2026, 13)
    # Across the autumn change, too, the weeks ahead are consecutive.
    sunday_night = datetime(2026, 10, 25, 22, 59, tzinfo=UTC)  # Sunday 23:59 CET
    assert iso_weeks(sunday_night, BERLIN, 3) == [(2026, 43), (2026, 44), (2026, 45)]
    assert iso_week(sunday_night + timedelta(minutes=1), BERLIN) == (2026, 44)


def test_week_bounds_hold_a_dst_change_inside_the_week() -> None:
    start, end = week_bounds(2026, 13, BERLIN)  # 2026-03-23 .. 2026-03-30, spring forward
    assert (start.isoformat(), end.isoformat()) == (
        "2026-03-23T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    )
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=167)
    start, end = week_bounds(2026, 43, BERLIN)  # 2026-10-19 .. 2026-10-26, fall back
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=169)
    start, end = week_bounds(2026, 53, BERLIN)
    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-12-28", "2027-01-04")


def test_weeks_that_do_not_exist_are_refused() -> None:
    check_week(2026, 53)
    for year, week in [(2027, 53), (2026, 0), (2026, 54)]:
        with pytest.raises(ValueError, match="weeks"):
            check_week(year, week)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_week(datetime(2026, 1, 1), BERLIN)
