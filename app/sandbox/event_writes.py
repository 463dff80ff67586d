"""What a write does to a stored event: a create fills in Graph's defaults, a PATCH changes only
what its body names, and every change is a new version (a new changeKey)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.sandbox.event_body import EventChanges
from app.sandbox.state import (
    Event,
    new_change_key,
    new_ical_uid,
    new_immutable_id,
    new_rest_id,
)

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
    """A new version of the event: a new changeKey, and a modification time that never goes back
    even when the sandbox clock does."""
    event.change_key = new_change_key()
    event.modified_at = max(now, event.modified_at)
