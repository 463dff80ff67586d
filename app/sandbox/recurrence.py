"""Recurring series: reading a `patternedRecurrence` the way Graph does, and expanding a series
master into the occurrences that overlap a time window (wall time in the series' time zone)."""

from __future__ import annotations

import base64
import calendar
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from app.sandbox import errors
from app.sandbox.errors import GraphError
from app.sandbox.state import Event
from app.sandbox.timezones import resolve

PATTERN_TYPES = (
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
)
RANGE_TYPES = ("endDate", "noEnd", "numbered")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = ("first", "second", "third", "fourth", "last")
# A noEnd series from long ago must not make one calendarView request loop for ever.
MAX_STEPS = 200_000

_PATTERN_TYPE = "Microsoft.OutlookServices.RecurrencePatternType"
_RANGE_TYPE = "Microsoft.OutlookServices.RecurrenceRangeType"
_DAY_TYPE = "Microsoft.OutlookServices.DayOfWeek"
_INDEX_TYPE = "Microsoft.OutlookServices.WeekIndex"


def _invalid() -> GraphError:
    return GraphError(
        400, "ErrorPropertyValidationFailure", "At least one property failed validation."
    )


def _member(value: object, members: tuple[str, ...], type_name: str) -> str:
    if isinstance(value, str):
        for member in members:
            if member.casefold() == value.casefold():
                return member
    raise errors.bad_literal(value, type_name)


def _int(value: object, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.bad_literal(value, "Edm.Int32")
    return value


def _date(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.bad_literal(value, "Edm.Date")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise errors.bad_literal(value, "Edm.Date") from exc


def normalize(value: dict[str, Any], start: tuple[datetime, str] | None) -> dict[str, Any]:
    """A request's recurrence in the complete form Graph stores and returns (every pattern and
    range property present, enums canonical); what Graph rejects raises its 400."""
    pattern, rng = value.get("pattern"), value.get("range")
    if not isinstance(pattern, dict) or not isinstance(rng, dict):
        raise _invalid()
    for key in pattern:
        if key not in (
            "type",
            "interval",
            "month",
            "dayOfMonth",
            "daysOfWeek",
            "firstDayOfWeek",
            "index",
            "@odata.type",
        ):
            raise errors.unknown_property(key, "Microsoft.OutlookServices.RecurrencePattern")
    for key in rng:
        if key not in (
            "type",
            "startDate",
            "endDate",
            "recurrenceTimeZone",
            "numberOfOccurrences",
            "@odata.type",
        ):
            raise errors.unknown_property(key, "Microsoft.OutlookServices.RecurrenceRange")
    kind = _member(pattern.get("type"), PATTERN_TYPES, _PATTERN_TYPE)
    days_raw = pattern.get("daysOfWeek") or []
    if not isinstance(days_raw, list):
        raise errors.bad_literal(days_raw, f"Collection({_DAY_TYPE})")
    days = [_member(d, DAYS, _DAY_TYPE) for d in days_raw]
    normal_pattern: dict[str, Any] = {
        "type": kind,
        "interval": _int(pattern.get("interval"), 1),
        "month": _int(pattern.get("month"), 0),
        "dayOfMonth": _int(pattern.get("dayOfMonth"), 0),
        "daysOfWeek": days,
        "firstDayOfWeek": _member(pattern.get("firstDayOfWeek", "sunday"), DAYS, _DAY_TYPE),
        "index": _member(pattern.get("index", "first"), INDEXES, _INDEX_TYPE),
    }
    range_kind = _member(rng.get("type"), RANGE_TYPES, _RANGE_TYPE)
    zone = rng.get("recurrenceTimeZone")
    if zone is not None:
        if not isinstance(zone, str):
            raise errors.bad_literal(zone, "Edm.String")
        resolve(zone)
    elif start is not None:
        zone = start[1]
    # Without either, the series follows its start's zone, read when it is expanded.
    normal_range: dict[str, Any] = {
        "type": range_kind,
        "startDate": _date(rng.get("startDate")),
        "endDate": _date(rng.get("endDate")) or "0001-01-01",
        "recurrenceTimeZone": zone,
        "numberOfOccurrences": _int(rng.get("numberOfOccurrences"), 0),
    }
    interval: int = normal_pattern["interval"]
    needs_days = kind in ("weekly", "relativeMonthly", "relativeYearly")
    needs_day_of_month = kind in ("absoluteMonthly", "absoluteYearly")
    needs_month = kind in ("absoluteYearly", "relativeYearly")
    if (
        interval < 1
        or (needs_days and not days)
        or (needs_day_of_month and not 1 <= normal_pattern["dayOfMonth"] <= 31)
        or (needs_month and not 1 <= normal_pattern["month"] <= 12)
        or normal_range["startDate"] is None
        or (range_kind == "numbered" and normal_range["numberOfOccurrences"] < 1)
        or (range_kind == "endDate" and rng.get("endDate") is None)
    ):
        raise _invalid()
    return {"pattern": normal_pattern, "range": normal_range}


def _nth_weekday(year: int, month: int, days: set[int], index: str) -> date:
    """relativeMonthly/Yearly: the index-th day of the month whose weekday is in `days`."""
    matching = [
        date(year, month, d)
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() in days
    ]
    return matching[-1] if index == "last" else matching[INDEXES.index(index)]


def _clamped(year: int, month: int, day: int) -> date:
    # Outlook puts "day 31 of every month" on the last day of shorter months.
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _candidates(pattern: dict[str, Any], first: date) -> Iterator[date]:
    """Dates on the pattern, ascending, from the period containing `first` (may precede it)."""
    kind, interval = pattern["type"], pattern["interval"]
    weekdays = {DAYS.index(d) for d in pattern["daysOfWeek"]}
    if kind == "daily":
        day = first
        while True:
            yield day
            day += timedelta(days=interval)
    elif kind == "weekly":
        week_start_day = DAYS.index(pattern["firstDayOfWeek"])
        week = first - timedelta(days=(first.weekday() - week_start_day) % 7)
        offsets = sorted((d - week_start_day) % 7 for d in weekdays)
        while True:
            for offset in offsets:
                yield week + timedelta(days=offset)
            week += timedelta(weeks=interval)
    elif kind in ("absoluteMonthly", "relativeMonthly"):
        months = first.year * 12 + first.month - 1
        while True:
            year, month = divmod(months, 12)
            if kind == "absoluteMonthly":
                yield _clamped(year, month + 1, pattern["dayOfMonth"])
            else:
                yield _nth_weekday(year, month + 1, weekdays, pattern["index"])
            months += interval
    else:
        year = first.year
        while True:
            if kind == "absoluteYearly":
                yield _clamped(year, pattern["month"], pattern["dayOfMonth"])
            else:
                yield _nth_weekday(year, pattern["month"], weekdays, pattern["index"])
            year += interval


def occurrence_dates(recurrence: dict[str, Any], until: date) -> Iterator[date]:
    """The series' occurrence dates (in its time zone) in order, up to `until` inclusive."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    first = date.fromisoformat(rng["startDate"])
    last = until
    if rng["type"] == "endDate":
        last = min(last, date.fromisoformat(rng["endDate"]))
    remaining = rng["numberOfOccurrences"] if rng["type"] == "numbered" else None
    for steps, day in enumerate(_candidates(pattern, first)):
        if day > last or steps > MAX_STEPS or remaining == 0:
            return
        if day < first:
            continue
        yield day
        if remaining is not None:
            remaining -= 1


@dataclass(frozen=True)
class Occurrence:
    master: Event
    original_date: date  # the date in the series' time zone: the occurrence's identity
    start: datetime  # UTC
    end: datetime  # UTC


def occurrences(master: Event, window_start: datetime, window_end: datetime) -> list[Occurrence]:
    """The master's occurrences overlapping [window_start, window_end): wall-clock time stays
    fixed in the series' zone, so a weekly 09:00 Berlin meeting shifts in UTC across DST."""
    recurrence = master.fields.get("recurrence")
    if not recurrence or master.start is None or master.end is None:
        return []
    zone = resolve(recurrence["range"]["recurrenceTimeZone"] or master.start[1])
    local_start = master.start[0].astimezone(zone)
    wall = time(local_start.hour, local_start.minute, local_start.second, local_start.microsecond)
    duration = master.end[0] - master.start[0]
    until = window_end.astimezone(zone).date() + timedelta(days=1)
    found = []
    for day in occurrence_dates(recurrence, until):
        start = datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)
        end = start + duration
        if overlaps(start, end, window_start, window_end):
            found.append(Occurrence(master, day, start, end))
    return found


def overlaps(start: datetime, end: datetime, window_start: datetime, window_end: datetime) -> bool:
    if start == end:  # a zero-length event counts where it starts
        return window_start <= start < window_end
    return start < window_end and end > window_start


def occurrence_id(master_id: str, original_date: date) -> str:
    """Stable per (series, original date) and in the same id form as the master's."""
    digest = hashlib.sha256(f"{master_id}|{original_date.isoformat()}".encode()).digest()
    return master_id[:40] + base64.urlsafe_b64encode(digest * 3).decode()


def occurrence_ical_uid(master_uid: str, original_date: date) -> str:
    """Exchange's GlobalObjectId carries the instance date (YYYY, MM, DD) in bytes 16-19; the
    master has zeros there. That is why each occurrence has its own iCalUId."""
    stamp = f"{original_date.year:04X}{original_date.month:02X}{original_date.day:02X}"
    return master_uid[:32] + stamp + master_uid[40:]
