"""Reading a create or PATCH body of an event the way Graph does: what it rejects (with Graph's
own error), what it ignores, and what it changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.sandbox import errors, recurrence
from app.sandbox.errors import GraphError
from app.sandbox.timezones import parse_date_time_time_zone

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
