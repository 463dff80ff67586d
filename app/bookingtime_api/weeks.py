"""ISO-8601 weeks in an organisation's time zone: the (iso_year, iso_week) that `listWeek` takes,
for this week and weeks ahead, and the instants a week spans. Pure: no I/O.

Weeks are counted on local calendar dates, never as 7 × 24 hours: a week holding a DST change is
167 or 169 hours long, and the ISO year differs from the calendar year around New Year (2026 has
53 weeks; 2027-01-01 is in week 53 of 2026).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

IsoWeek = tuple[int, int]


def _zone(time_zone: str | ZoneInfo) -> ZoneInfo:
    return time_zone if isinstance(time_zone, ZoneInfo) else ZoneInfo(time_zone)


def local_date(now: datetime, time_zone: str | ZoneInfo) -> date:
    """The calendar date in `time_zone` at the aware instant `now`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(_zone(time_zone)).date()


def iso_week(now: datetime, time_zone: str | ZoneInfo, *, weeks_ahead: int = 0) -> IsoWeek:
    """(iso_year, iso_week) of the week `weeks_ahead` after the one holding `now` locally."""
    day = local_date(now, time_zone) + timedelta(weeks=weeks_ahead)
    year, week, _ = day.isocalendar()
    return year, week


def iso_weeks(
    now: datetime, time_zone: str | ZoneInfo, count: int, *, first: int = 0
) -> list[IsoWeek]:
    """`count` consecutive weeks, the first `first` weeks after the one holding `now`."""
    return [iso_week(now, time_zone, weeks_ahead=first + n) for n in range(count)]


def weeks_in_year(iso_year: int) -> int:
    """52 or 53: 28 December is always in the year's last ISO week."""
    return date(iso_year, 12, 28).isocalendar()[1]


def check_week(iso_year: int, iso_week_number: int) -> None:
    """ValueError unless the week exists (week 53 only in long years)."""
    if not 1 <= iso_week_number <= weeks_in_year(iso_year):
        raise ValueError(
            f"ISO year {iso_year} has {weeks_in_year(iso_year)} weeks, not week {iso_week_number}"
        )


def week_bounds(
    iso_year: int, iso_week_number: int, time_zone: str | ZoneInfo
) -> tuple[datetime, datetime]:
    """The week's start (Monday 00:00 local) and the next week's start, aware in the zone."""
    check_week(iso_year, iso_week_number)
    zone = _zone(time_zone)
    monday = date.fromisocalendar(iso_year, iso_week_number, 1)
    start = datetime.combine(monday, time(), tzinfo=zone)
    end = datetime.combine(monday + timedelta(weeks=1), time(), tzinfo=zone)
    return start, end
