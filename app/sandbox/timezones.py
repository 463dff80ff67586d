"""Time-zone names Graph accepts (Windows names and IANA names) and dateTimeTimeZone formatting."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tzlocal.windows_tz import win_tz

from app.sandbox.errors import GraphError, bad_literal, time_zone_not_supported, unknown_property

# Every Windows zone name Windows (and so Graph) knows, to the IANA zone CLDR pairs with it as its
# "001" zone: the maintained table tzlocal ships, not a hand-picked subset.
WINDOWS_TO_IANA: dict[str, str] = {**win_tz, "UTC": "UTC"}

_DATE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})?$"
)


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones())


def resolve(name: str) -> tzinfo:
    """The zone for a Windows or IANA name; an unknown name is Graph's 400."""
    iana = WINDOWS_TO_IANA.get(name, name)
    if iana == "UTC":
        return UTC
    if iana not in _iana_names():
        raise time_zone_not_supported(name)
    try:
        return ZoneInfo(iana)
    except ZoneInfoNotFoundError as exc:
        raise time_zone_not_supported(name) from exc


def parse_date_time_time_zone(value: object) -> tuple[datetime, str]:
    """A dateTimeTimeZone from a request, as an aware UTC instant plus the zone name given."""
    if not isinstance(value, dict):
        raise bad_literal(value, "Microsoft.OutlookServices.DateTimeTimeZone")
    for key in value:
        if key not in ("dateTime", "timeZone", "@odata.type"):
            raise unknown_property(key, "Microsoft.OutlookServices.DateTimeTimeZone")
    raw, zone_name = value.get("dateTime"), value.get("timeZone")
    if not isinstance(raw, str) or not isinstance(zone_name, str):
        raise GraphError(
            400, "ErrorPropertyValidationFailure", "At least one property failed validation."
        )
    match = _DATE_TIME.match(raw)
    if match is None:
        raise bad_literal(raw, "Edm.String")
    zone = resolve(zone_name)
    wall = datetime.fromisoformat(match.group(1)).replace(
        microsecond=int((match.group(2) or "0").ljust(7, "0")[:6])
    )
    # A dateTime carrying its own offset is read as that instant; otherwise it is wall time.
    if match.group(3):
        instant = datetime.fromisoformat(match.group(1) + match.group(3).replace("Z", "+00:00"))
        instant = instant.replace(microsecond=wall.microsecond)
        return instant.astimezone(UTC), zone_name
    return wall.replace(tzinfo=zone).astimezone(UTC), zone_name


def format_date_time_time_zone(instant: datetime, zone_name: str) -> dict[str, str]:
    """Graph's output form: wall time with 7 fractional digits, in the preferred zone."""
    local = instant.astimezone(resolve(zone_name))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond:06d}0"
    return {"dateTime": text, "timeZone": zone_name}


def format_timestamp(instant: datetime) -> str:
    """createdDateTime and friends: UTC with 7 fractional digits and a Z."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond:06d}0Z"
