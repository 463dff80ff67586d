"""Events without I/O: reading a create/PATCH body the way Graph does (what it rejects, what it
ignores), applying it, and rendering an event in Graph's exact output form."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from app.sandbox import errors, recurrence
from app.sandbox.errors import GraphError
from app.sandbox.state import (
    Event,
    User,
    new_change_key,
    new_ical_uid,
    new_immutable_id,
    new_rest_id,
)
from app.sandbox.timezones import (
    format_date_time_time_zone,
    format_timestamp,
    parse_date_time_time_zone,
)

# Outlook names its own types in RequestBodyRead messages (graph-protocol.md sources, §5).
EVENT_TYPE = "Microsoft.OutlookServices.Event"
ENUMS: dict[str, tuple[str, list[str]]] = {
    "importance": ("Microsoft.OutlookServices.Importance", ["low", "normal", "high"]),
    "sensitivity": (
        "Microsoft.OutlookServices.Sensitivity",
        ["normal", "personal", "private", "confidential"],
    ),
    "showAs": (
        "Microsoft.OutlookServices.FreeBusyStatus",
        ["unknown", "free", "tentative", "busy", "oof", "workingElsewhere"],
    ),
    "onlineMeetingProvider": (
        "Microsoft.OutlookServices.OnlineMeetingProviderType",
        ["unknown", "skypeForBusiness", "skypeForConsumer", "teamsForBusiness"],
    ),
}
BOOLEANS = frozenset(
    {
        "isAllDay",
        "isReminderOn",
        "responseRequested",
        "allowNewTimeProposals",
        "hideAttendees",
        "isOnlineMeeting",
    }
)
# Computed by the server: Graph accepts them in a body and ignores them.
READ_ONLY = frozenset(
    {
        "id",
        "@odata.etag",
        "@odata.context",
        "@odata.type",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "iCalUId",
        "organizer",
        "responseStatus",
        "webLink",
        "bodyPreview",
        "hasAttachments",
        "isOrganizer",
        "seriesMasterId",
        "type",
        "originalStart",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "onlineMeeting",
        "onlineMeetingUrl",
        "isCancelled",
        "isDraft",
        "cancelledOccurrences",
        "calendar",
        "instances",
        "exceptionOccurrences",
        "attachments",
        "extensions",
        "multiValueExtendedProperties",
    }
)
WRITABLE = frozenset(
    {
        "subject",
        "body",
        "start",
        "end",
        "location",
        "locations",
        "attendees",
        "categories",
        "reminderMinutesBeforeStart",
        "recurrence",
        "transactionId",
        "singleValueExtendedProperties",
        *ENUMS,
        *BOOLEANS,
    }
)
# The properties an event renders, in Graph's order; $select picks among these.
OUTPUT_ORDER = (
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "transactionId",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "iCalUId",
    "reminderMinutesBeforeStart",
    "isReminderOn",
    "hasAttachments",
    "subject",
    "bodyPreview",
    "importance",
    "sensitivity",
    "isAllDay",
    "isCancelled",
    "isOrganizer",
    "responseRequested",
    "seriesMasterId",
    "showAs",
    "type",
    "webLink",
    "onlineMeetingUrl",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "allowNewTimeProposals",
    "isDraft",
    "hideAttendees",
    "responseStatus",
    "body",
    "start",
    "end",
    "location",
    "locations",
    "recurrence",
    "attendees",
    "organizer",
    "onlineMeeting",
)
SELECTABLE = {name.casefold(): name for name in (*OUTPUT_ORDER, "id")}
DEFAULTS: dict[str, Any] = {
    "categories": [],
    "reminderMinutesBeforeStart": 15,
    "isReminderOn": True,
    "subject": "",
    "importance": "normal",
    "sensitivity": "normal",
    "isAllDay": False,
    "responseRequested": True,
    "showAs": "busy",
    "isOnlineMeeting": False,
    "onlineMeetingProvider": "unknown",
    "allowNewTimeProposals": True,
    "hideAttendees": False,
    "body": {"contentType": "html", "content": ""},
    "location": None,
    "attendees": [],
    "recurrence": None,
}
NO_RESPONSE = {"response": "none", "time": "0001-01-01T00:00:00Z"}


def _wrong_type(edm: str) -> GraphError:
    return GraphError(
        400,
        "RequestBodyRead",
        f"Cannot convert a primitive value to the expected type '{edm}'. See the inner exception"
        " for more details.",
    )


def _only_keys(value: dict[str, Any], allowed: set[str], type_name: str) -> None:
    for key in value:
        if key not in allowed and key != "@odata.type":
            raise errors.unknown_property(key, type_name)


def _enum(name: str, value: object) -> str:
    type_name, members = ENUMS[name]
    if isinstance(value, str):
        # Requests may use any case ("HTML" in Learn's own example); responses are canonical.
        for member in members:
            if member.casefold() == value.casefold():
                return member
    raise errors.bad_literal(value, type_name)


def _email(value: object, type_name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _wrong_type(type_name)
    _only_keys(value, {"address", "name"}, "Microsoft.OutlookServices.EmailAddress")
    address = value.get("address")
    if not isinstance(address, str):
        raise _wrong_type("Edm.String")
    name = value.get("name")
    return {"name": name if isinstance(name, str) else address, "address": address}


def _attendees(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _wrong_type("Collection(Microsoft.OutlookServices.Attendee)")
    if len(value) > 500:
        raise GraphError(
            400, "ErrorPropertyValidationFailure", "At least one property failed validation."
        )
    result = []
    for item in value:
        if not isinstance(item, dict):
            raise _wrong_type("Microsoft.OutlookServices.Attendee")
        _only_keys(
            item,
            {"emailAddress", "type", "status", "proposedNewTime"},
            "Microsoft.OutlookServices.Attendee",
        )
        kind = item.get("type", "required")
        kinds = {"required": "required", "optional": "optional", "resource": "resource"}
        if not isinstance(kind, str) or kind.casefold() not in kinds:
            raise errors.bad_literal(kind, "Microsoft.OutlookServices.AttendeeType")
        result.append(
            {
                "type": kinds[kind.casefold()],
                "status": dict(NO_RESPONSE),
                "emailAddress": _email(
                    item.get("emailAddress"), "Microsoft.OutlookServices.EmailAddress"
                ),
            }
        )
    return result


def _location(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong_type("Microsoft.OutlookServices.Location")
    allowed = {
        "displayName",
        "locationEmailAddress",
        "address",
        "coordinates",
        "locationUri",
        "locationType",
        "uniqueId",
        "uniqueIdType",
    }
    _only_keys(value, allowed, "Microsoft.OutlookServices.Location")
    name = value.get("displayName", "")
    if not isinstance(name, str):
        raise _wrong_type("Edm.String")
    return {
        "displayName": name,
        "locationType": "default",
        "uniqueId": name,
        "uniqueIdType": "private",
    }


def _body(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _wrong_type("Microsoft.OutlookServices.ItemBody")
    _only_keys(value, {"contentType", "content"}, "Microsoft.OutlookServices.ItemBody")
    kind = value.get("contentType", "text")
    if not isinstance(kind, str) or kind.casefold() not in ("text", "html"):
        raise errors.bad_literal(kind, "Microsoft.OutlookServices.BodyType")
    content = value.get("content") or ""
    if not isinstance(content, str):
        raise _wrong_type("Edm.String")
    if kind.casefold() == "html" and "<html" not in content.casefold():
        content = f"<html><head></head><body>{content}</body></html>"
    return {"contentType": kind.casefold(), "content": content}


def _extended(value: object) -> dict[str, str]:
    if not isinstance(value, list):
        raise _wrong_type("Collection(Microsoft.OutlookServices.SingleValueLegacyExtendedProperty)")
    result = {}
    for item in value:
        if not isinstance(item, dict):
            raise _wrong_type("Microsoft.OutlookServices.SingleValueLegacyExtendedProperty")
        _only_keys(
            item, {"id", "value"}, "Microsoft.OutlookServices.SingleValueLegacyExtendedProperty"
        )
        prop_id, prop_value = item.get("id"), item.get("value")
        if not isinstance(prop_id, str) or not isinstance(prop_value, str):
            raise _wrong_type("Edm.String")
        result[prop_id] = prop_value
    return result


@dataclass
class EventChanges:
    fields: dict[str, Any] = field(default_factory=dict)
    start: tuple[datetime, str] | None = None
    end: tuple[datetime, str] | None = None
    extended: dict[str, str] = field(default_factory=dict)
    transaction_id: str | None = None


def parse_changes(body: dict[str, Any]) -> EventChanges:
    """A create or PATCH body, validated as strictly as Graph validates it."""
    changes = EventChanges()
    for name, value in body.items():
        if name in READ_ONLY:
            continue
        if name not in WRITABLE:
            raise errors.unknown_property(name, EVENT_TYPE)
        if name in ("start", "end"):
            parsed = parse_date_time_time_zone(value)
            if name == "start":
                changes.start = parsed
            else:
                changes.end = parsed
        elif name == "singleValueExtendedProperties":
            changes.extended = _extended(value)
        elif name == "transactionId":
            if value is not None and not isinstance(value, str):
                raise _wrong_type("Edm.String")
            changes.transaction_id = value
        elif name in ENUMS:
            changes.fields[name] = _enum(name, value)
        elif name in BOOLEANS:
            if not isinstance(value, bool):
                raise _wrong_type("Edm.Boolean")
            changes.fields[name] = value
        elif name == "reminderMinutesBeforeStart":
            if not isinstance(value, int) or isinstance(value, bool):
                raise _wrong_type("Edm.Int32")
            changes.fields[name] = value
        elif name == "subject":
            if value is not None and not isinstance(value, str):
                raise _wrong_type("Edm.String")
            changes.fields[name] = value or ""
        elif name == "categories":
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise _wrong_type("Collection(Edm.String)")
            changes.fields[name] = list(value)
        elif name == "body":
            changes.fields[name] = _body(value)
        elif name == "location":
            changes.fields[name] = _location(value)
        elif name == "locations":
            if not isinstance(value, list):
                raise _wrong_type("Collection(Microsoft.OutlookServices.Location)")
            changes.fields[name] = [loc for loc in (_location(v) for v in value) if loc]
        elif name == "attendees":
            changes.fields[name] = _attendees(value)
        elif name == "recurrence":
            if value is not None and not isinstance(value, dict):
                raise _wrong_type("Microsoft.OutlookServices.PatternedRecurrence")
            changes.fields[name] = value
    if changes.fields.get("recurrence") is not None:
        changes.fields["recurrence"] = recurrence.normalize(
            changes.fields["recurrence"], changes.start
        )
    return changes


def new_event(changes: EventChanges, now: datetime) -> Event:
    fields = {**DEFAULTS, **changes.fields}
    if "locations" not in changes.fields:
        fields["locations"] = [fields["location"]] if fields["location"] else []
    return Event(
        immutable_id=new_immutable_id(),
        rest_id=new_rest_id(),
        change_key=new_change_key(),
        ical_uid=new_ical_uid(),
        created_at=now,
        modified_at=now,
        start=changes.start,
        end=changes.end,
        fields=fields,
        extended=dict(changes.extended),
        transaction_id=changes.transaction_id,
    )


def apply_changes(event: Event, changes: EventChanges, now: datetime) -> None:
    """Only what the body names changes; every change is a new version (new changeKey)."""
    event.fields.update(changes.fields)
    if "location" in changes.fields and "locations" not in changes.fields:
        location = changes.fields["location"]
        event.fields["locations"] = [location] if location else []
    if changes.start is not None:
        event.start = changes.start
    if changes.end is not None:
        event.end = changes.end
    event.extended.update(changes.extended)
    bump(event, now)


def bump(event: Event, now: datetime) -> None:
    event.change_key = new_change_key()
    event.modified_at = max(now, event.modified_at)


def _text_of(html_content: str) -> str:
    text = re.sub(r"<(head|style|script)[^>]*>.*?</\1>", "", html_content, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def _render_body(stored: dict[str, str], preferred: str | None) -> dict[str, str]:
    kind, content = stored["contentType"], stored["content"]
    if preferred == "text":
        return {"contentType": "text", "content": content if kind == "text" else _text_of(content)}
    if kind == "html":
        return dict(stored)
    escaped = html.escape(content).replace("\n", "<br>\r\n")
    wrapped = f'<html><head></head><body><div class="PlainText">{escaped}</div></body></html>'
    return {"contentType": "html", "content": wrapped}


@dataclass(frozen=True)
class RenderOptions:
    time_zone: str = "UTC"
    immutable_ids: bool = False
    body_type: str | None = None  # "text" or "html" from Prefer: outlook.body-content-type
    select: tuple[str, ...] | None = None
    expand_extended: tuple[str, ...] | None = None


def render_event(event: Event, owner: User, options: RenderOptions) -> dict[str, Any]:
    """The event as Graph returns it (without @odata.context, which depends on the route)."""
    event_id = event.immutable_id if options.immutable_ids else event.rest_id
    fields = event.fields
    location = fields.get("location")
    empty_location = {
        "displayName": "",
        "locationType": "default",
        "uniqueIdType": "unknown",
        "address": {},
        "coordinates": {},
    }
    full: dict[str, Any] = {
        "createdDateTime": format_timestamp(event.created_at),
        "lastModifiedDateTime": format_timestamp(event.modified_at),
        "changeKey": event.change_key,
        "categories": list(fields["categories"]),
        "transactionId": event.transaction_id,
        "originalStartTimeZone": event.start[1] if event.start else "UTC",
        "originalEndTimeZone": event.end[1] if event.end else "UTC",
        "iCalUId": event.ical_uid,
        "reminderMinutesBeforeStart": fields["reminderMinutesBeforeStart"],
        "isReminderOn": fields["isReminderOn"],
        "hasAttachments": False,
        "subject": fields["subject"],
        "bodyPreview": _text_of(fields["body"]["content"])[:255]
        if fields["body"]["contentType"] == "html"
        else fields["body"]["content"][:255],
        "importance": fields["importance"],
        "sensitivity": fields["sensitivity"],
        "isAllDay": fields["isAllDay"],
        "isCancelled": False,
        "isOrganizer": True,
        "responseRequested": fields["responseRequested"],
        "seriesMasterId": None,
        "showAs": fields["showAs"],
        "type": "seriesMaster" if fields.get("recurrence") else "singleInstance",
        "webLink": "https://outlook.office365.com/owa/?itemid="
        f"{quote(event_id, safe='')}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": fields["isOnlineMeeting"],
        "onlineMeetingProvider": fields["onlineMeetingProvider"],
        "allowNewTimeProposals": fields["allowNewTimeProposals"],
        "isDraft": False,
        "hideAttendees": fields["hideAttendees"],
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": _render_body(fields["body"], options.body_type),
        "start": format_date_time_time_zone(event.start[0], options.time_zone)
        if event.start
        else None,
        "end": format_date_time_time_zone(event.end[0], options.time_zone) if event.end else None,
        "location": location if location else empty_location,
        "locations": list(fields.get("locations", [location] if location else [])),
        "recurrence": fields.get("recurrence"),
        "attendees": [dict(a) for a in fields["attendees"]],
        "organizer": {
            "emailAddress": {"name": owner.display_name, "address": owner.user_principal_name}
        },
        "onlineMeeting": None,
    }
    if event.transaction_id is None:
        del full["transactionId"]  # only returned if set (graph-protocol.md §2)
    names = OUTPUT_ORDER if options.select is None else options.select
    rendered: dict[str, Any] = {"@odata.etag": f'W/"{event.change_key}"', "id": event_id}
    for name in OUTPUT_ORDER:
        if name in names and name in full:
            rendered[name] = full[name]
    if options.expand_extended is not None:
        found = [
            {"id": prop_id, "value": value}
            for prop_id, value in event.extended.items()
            if prop_id in options.expand_extended
        ]
        if found:
            rendered["singleValueExtendedProperties"] = found
    return rendered


def extended_matches(event: Event, prop_id: str, value: str) -> bool:
    # The id is case-sensitive, the value is not (graph-protocol.md §2).
    stored = event.extended.get(prop_id)
    return stored is not None and stored.casefold() == value.casefold()


def render_occurrence(
    occurrence: recurrence.Occurrence, owner: User, options: RenderOptions
) -> dict[str, Any]:
    """One occurrence of a series as calendarView returns it: the master's properties with its
    own id, iCalUId, times and `type`, and no recurrence of its own."""
    master = occurrence.master
    master_id = master.immutable_id if options.immutable_ids else master.rest_id
    event_id = recurrence.occurrence_id(master_id, occurrence.original_date)
    full = render_event(master, owner, replace(options, select=None))
    full.update(
        {
            "id": event_id,
            "iCalUId": recurrence.occurrence_ical_uid(master.ical_uid, occurrence.original_date),
            "seriesMasterId": master_id,
            "type": "occurrence",
            "webLink": "https://outlook.office365.com/owa/?itemid="
            f"{quote(event_id, safe='')}&exvsurl=1&path=/calendar/item",
            "start": format_date_time_time_zone(occurrence.start, options.time_zone),
            "end": format_date_time_time_zone(occurrence.end, options.time_zone),
            "recurrence": None,
        }
    )
    if options.select is None:
        return full
    kept = {"@odata.etag", "id", *options.select, "singleValueExtendedProperties"}
    return {name: value for name, value in full.items() if name in kept}
