"""Telling calbridge's own writes (echoes) from a person's changes to its events, without I/O:
what calbridge wants an event to show now, and whether Outlook's version means the same."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.busy.blocks import graph_instant, wall_instant
from app.busy.keys import mailbox_key
from app.graph.schemas import Event
from app.models import Appointment, EventMapping
from app.sync.planner import listed_employees
from app.sync.settings import TranslationSettings
from app.sync.translate import EventBody, InvalidAppointment, translate

ChangeKind = Literal["edited", "deleted"]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A person changed or deleted one of calbridge's events in Outlook."""

    row_id: int
    appointment_id: str
    booking_resource_id: str
    mailbox: str
    event_id: str
    kind: ChangeKind
    change_key: str | None


def conflict(row: EventMapping, event_id: str, kind: ChangeKind, key: str | None) -> Conflict:
    return Conflict(
        row_id=row.id,
        appointment_id=row.appointment_id,
        booking_resource_id=row.booking_resource_id,
        mailbox=row.mailbox,
        event_id=event_id,
        kind=kind,
        change_key=key,
    )


def expected_body(
    settings: TranslationSettings,
    row: EventMapping,
    snapshots: Mapping[str, Appointment],
    employees: Mapping[str, str],
) -> EventBody | None:
    """The event calbridge wants for this row now; None when it wants none there (the
    appointment is cancelled, moved to another employee or mailbox) or cannot tell."""
    snapshot = snapshots.get(row.appointment_id)
    if snapshot is None:
        return None
    payload = dict(snapshot.payload)
    canceled = snapshot.canceled or payload.get("canceled") is True
    if canceled and settings.on_cancel == "delete":
        return None
    mailbox = employees.get(row.booking_resource_id)
    listed = listed_employees(payload.get("bookingResourceList"))
    if (
        row.booking_resource_id not in listed
        or mailbox is None
        or mailbox_key(mailbox) != mailbox_key(row.mailbox)
    ):
        return None
    try:
        return translate(payload, settings, canceled=canceled)
    except InvalidAppointment:
        return None


def judge_event(event: Event, row: EventMapping, expected: EventBody | None) -> Conflict | None:
    """None for an echo of calbridge's own write (or an event calbridge no longer tends), else
    the person's edit."""
    if row.deleted or row.detached:
        return None
    if event.change_key is not None and event.change_key == row.change_key:
        return None
    # The changeKey differs: a person's edit, or our write seen before the executor stored
    # its changeKey, or Exchange re-stamping the item. The last two leave exactly the content
    # calbridge wants (the translation of the latest snapshot; when a write is still pending
    # the stored field_hashes differ from it, and restoring is what that write does anyway).
    if expected is None or same_content(event, expected):
        return None
    return conflict(row, event.id, "edited", event.change_key)


def judge_read(
    found: Event | None, event_id: str, row: EventMapping, expected: EventBody | None
) -> Conflict | None:
    """An own event delta reported `@removed` (deleted or out of the window), judged by what a
    read of it returned (None: gone)."""
    if found is None:
        if expected is None:  # calbridge itself is removing it
            return None
        return conflict(row, event_id, "deleted", None)
    if found.change_key == row.change_key or expected is None or same_content(found, expected):
        return None  # calbridge moved it out of the window
    return conflict(row, event_id, "edited", found.change_key)


def overlaps(body: EventBody, window: tuple[datetime, datetime]) -> bool:
    """Whether the event calbridge wants lies (partly) inside the delta window."""
    start = wall_instant(body.start.date_time, body.start.time_zone)
    end = wall_instant(body.end.date_time, body.end.time_zone)
    return start < window[1] and end > window[0]


# --- content comparison --------------------------------------------------------------------------

_HEAD = re.compile(r"<head\b.*?</head>", re.S | re.I)
_BREAK = re.compile(r"<br\s*/?>|</p>|</div>", re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _plain(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _body_text(body: Any) -> str:
    if not isinstance(body, Mapping):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType", "text")).lower() == "html":
        content = html.unescape(_TAG.sub("", _BREAK.sub("\n", _HEAD.sub("", content))))
    return _plain(content)


def same_content(event: Event, body: EventBody) -> bool:
    """Whether the event shows what `body` writes, read the way Graph returns it (UTC times,
    HTML body, location with extra fields): each field calbridge writes, compared by meaning."""
    extra = event.model_extra or {}
    if (event.subject or "") != body.subject or (event.show_as or "busy") != body.show_as:
        return False
    if list(event.categories) != list(body.categories):
        return False
    if event.start is None or event.end is None:
        return False
    if graph_instant(event.start) != wall_instant(body.start.date_time, body.start.time_zone):
        return False
    if graph_instant(event.end) != wall_instant(body.end.date_time, body.end.time_zone):
        return False
    reminder_on = extra.get("isReminderOn")
    if reminder_on is not None and bool(reminder_on) != (body.reminder_minutes is not None):
        return False
    minutes = extra.get("reminderMinutesBeforeStart")
    if body.reminder_minutes is not None and minutes is not None:
        if minutes != body.reminder_minutes:
            return False
    location = extra.get("location")
    shown = location.get("displayName") if isinstance(location, Mapping) else None
    if _plain(str(shown or "")) != _plain(body.location.display_name):
        return False
    if "body" in extra and _body_text(extra["body"]) != _plain(body.text):
        return False
    return True
