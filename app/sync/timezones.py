"""An instant as Graph's dateTimeTimeZone: wall time in a Windows time zone (CLDR's IANA→Windows
mapping, via tzlocal), or in UTC when the zone is missing, unmapped or the wall time is ambiguous.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import tz_win, win_tz

UTC_NAME = "UTC"


@lru_cache(maxsize=512)
def load_zone(name: str) -> tzinfo | None:
    """The IANA zone, or None when tzdata does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def windows_name(zone: str | None) -> str | None:
    """The Windows name for an IANA zone (a Windows name passes through); None when unmapped."""
    if not zone:
        return None
    if zone in win_tz:
        return zone
    return tz_win.get(zone)


def graph_time(instant: datetime, zone: str | None) -> tuple[str, str]:
    """`(dateTime, timeZone)` naming exactly `instant`; `zone` is the appointment's IANA zone."""
    if instant.utcoffset() is None:
        raise ValueError("a naive datetime has no instant")
    name = windows_name(zone)
    # Graph reads a Windows name with Windows' rules, which CLDR pins to the name's "001" zone.
    # Converting into that zone (not the appointment's own) keeps the instant exact even where
    # the two zones' histories differ; when they agree (the usual case) the wall time is the same.
    canonical = load_zone(win_tz[name]) if name is not None else None
    if name is not None and canonical is not None:
        local = instant.astimezone(canonical)
        wall = local.replace(tzinfo=None)
        # A wall time in a DST fold names two instants and Graph would pick one: use UTC then.
        offsets = {wall.replace(tzinfo=canonical, fold=fold).utcoffset() for fold in (0, 1)}
        if offsets == {local.utcoffset()}:
            return _format(wall), name
    return _format(instant.astimezone(UTC).replace(tzinfo=None)), UTC_NAME


def _format(wall: datetime) -> str:
    text = wall.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{wall.microsecond:06d}0" if wall.microsecond else text
