"""Busy blocks from Outlook events, without I/O: which events block time, an occurrence
completed from its series master, and Graph's dateTimeTimeZone as a UTC instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from tzlocal.windows_tz import win_tz

from app.graph.schemas import Event, EventTime
from app.sync.timezones import load_zone


@dataclass(frozen=True, slots=True)
class BlockData:
    """What a busy block holds, read from one Outlook event or occurrence."""

    graph_event_id: str
    series_master_id: str | None
    start_at: datetime
    end_at: datetime
    show_as: str
    is_all_day: bool
    subject: str | None


def block_of(event: Event, *, subjects: bool) -> BlockData | None:
    """The busy block an event makes; None when it blocks nothing (free, cancelled, without
    times) or is a series master (its occurrences are the blocks)."""
    if event.type == "seriesMaster" or event.is_cancelled:
        return None
    show_as = event.show_as or "busy"
    if show_as == "free" or event.start is None or event.end is None:
        return None
    return BlockData(
        graph_event_id=event.id,
        series_master_id=event.series_master_id,
        start_at=graph_instant(event.start),
        end_at=graph_instant(event.end),
        show_as=show_as,
        is_all_day=bool(event.is_all_day),
        subject=event.subject if subjects else None,
    )


def with_master(occurrence: Event, master: Event | None) -> Event:
    """An occurrence that came without its series' properties, completed from the master; an
    occurrence whose master is gone blocks nothing."""
    if master is None:
        return occurrence.model_copy(update={"is_cancelled": True})
    return occurrence.model_copy(
        update={
            "show_as": master.show_as,
            "is_all_day": occurrence.is_all_day
            if occurrence.is_all_day is not None
            else master.is_all_day,
            "subject": occurrence.subject if occurrence.subject is not None else master.subject,
            "is_cancelled": occurrence.is_cancelled or master.is_cancelled,
        }
    )


def needs_master(event: Event) -> bool:
    """Delta sends occurrences slim: without `showAs` only the master tells how they block."""
    return event.series_master_id is not None and event.show_as is None


def graph_instant(value: EventTime) -> datetime:
    """A dateTimeTimeZone as an aware UTC instant (Graph sends 7 fractional digits)."""
    return wall_instant(value.date_time, value.time_zone)


def wall_instant(date_time: str, zone_name: str) -> datetime:
    """A wall-clock time in a Windows or IANA zone as an aware UTC instant."""
    head, dot, fraction = date_time.partition(".")
    text = f"{head}.{fraction[:6]}" if dot else head
    wall = datetime.fromisoformat(text)
    if wall.tzinfo is not None:
        return wall.astimezone(UTC)
    return wall.replace(tzinfo=_zone(zone_name)).astimezone(UTC)


def _zone(name: str) -> tzinfo:
    if not name or name.upper() in ("UTC", "ETC/UTC", "Z"):
        return UTC
    return load_zone(win_tz.get(name, name)) or UTC
