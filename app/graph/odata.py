"""Graph's request syntax: resource paths, OData literals and filters, Prefer values and the
date formats Graph takes, shared by the client and `$batch` items."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

#: The single-value extended property tagging calbridge's events with their appointment key.
#: The GUID is calbridge's own property set; never change it, or existing events lose their tag.
TAG_PROPERTY_ID = "String {19bb3d11-6575-4cf5-900e-b877ada95897} Name calbridgeAppointmentKey"

TAG_EXPAND = "singleValueExtendedProperties($filter=id eq '" + TAG_PROPERTY_ID + "')"


def events_path(mailbox: str) -> str:
    """`/users/{mailbox}/events`, relative to the version root (as `$batch` items want it)."""
    return "/users/" + quote(mailbox, safe="@") + "/events"


def event_path(mailbox: str, event_id: str) -> str:
    return events_path(mailbox) + "/" + quote(event_id, safe="=")


def odata_string(value: str) -> str:
    """An OData string literal: single quotes around, an embedded quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def tag_filter(tag_value: str) -> str:
    return (
        "singleValueExtendedProperties/Any(ep: ep/id eq "
        f"{odata_string(TAG_PROPERTY_ID)} and ep/value eq {odata_string(tag_value)})"
    )


def prefer_timezone(timezone: str) -> str:
    return f'outlook.timezone="{timezone}"'


def graph_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("delta window bounds must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def if_match_value(value: str) -> str:
    """Accept an `@odata.etag` as is, or a bare changeKey (Graph's etag is `W/"<changeKey>"`)."""
    return value if value.startswith(('W/"', '"')) else f'W/"{value}"'


def subscription_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("subscription expiration must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
