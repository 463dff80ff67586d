"""Rendering an event, or one occurrence of a series, in Graph's exact output form: property
order, `$select`, the preferred body type, time zones and id forms."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from app.sandbox import recurrence
from app.sandbox.state import Event, User
from app.sandbox.timezones import format_date_time_time_zone, format_timestamp

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
