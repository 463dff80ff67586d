"""The bookingtime intake: parse a verified delivery, then record it in the caller's transaction.

Recording inserts the inbox row, stores the appointment snapshot when it is not older than the
stored one and enqueues `sync.appointment`. It never commits and never calls Graph.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.bookingtime.schemas import APPOINTMENT_EVENT_TYPES, AppointmentEvent, OtherEvent
from app.inbox import repository as inbox
from app.inbox.repository import Receiver
from app.models.inbox_event import INBOX_ACCEPTED, INBOX_IGNORED, INBOX_STALE
from app.queue.repository import enqueue

SOURCE = "bookingtime"
SYNC_APPOINTMENT = "sync.appointment"

# bookingtime's objects nest a few levels; a deeper document is refused before anything walks
# or re-serialises it recursively (deep enough, that would be a RecursionError, not a 400).
MAX_NESTING = 32
# Escapes that decode to text no database stores: U+0000 (PostgreSQL text and jsonb refuse it)
# and UTF-16 surrogates (lone ones cannot be encoded). Pairs decode to one character and pass.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class InvalidJson(ValueError):
    """The body is not a JSON object calbridge can store (400 `invalid_json`)."""


class InvalidPayload(ValueError):
    """The JSON object breaks the contract (422 `validation_failed`); `errors` name the fields."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        fields = ", ".join(dict.fromkeys(error["field"] for error in errors))
        super().__init__(f"invalid or missing: {fields}")


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A valid delivery: for an appointment event, `appointment` is the object as received."""

    event_type: str
    event_at: datetime
    appointment_id: str | None
    appointment: dict[str, Any] | None
    canceled: bool


@dataclass(frozen=True, slots=True)
class IntakeOutcome:
    status: Literal["accepted", "ignored", "stale", "duplicate"]
    inbox_event_id: int | None = None
    job_id: int | None = None
    # True when the event joined a `sync.appointment` job already pending for the appointment:
    # that job reads the latest snapshot when it runs, so nothing is lost.
    coalesced: bool = False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and _is_unencodable(value))
    if isinstance(value, dict):
        return any(_has_unstorable_text(k) or _has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable_text(item) for item in value)
    return False


def _nesting(value: Any) -> int:
    depth, level = 0, [(value, 1)]
    while level:
        node, at = level.pop()
        if isinstance(node, dict | list):
            depth = max(depth, at)
            if depth > MAX_NESTING:
                break
            children = node.values() if isinstance(node, dict) else node
            level.extend((child, at + 1) for child in children)
    return depth


def _is_unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _field_errors(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join((*prefix, *(str(part) for part in error["loc"]))) or "body",
            "message": error["msg"],
        }
        for error in exc.errors(include_url=False)
    ]


def parse_event(text: str, *, organization_id: str) -> ParsedEvent:
    """The delivery's event, checked against the contract and the path's organisation."""
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidJson("the body must be a JSON object")
    # Counting brackets is cheap and bounds the depth, so ordinary payloads skip the walk.
    if text.count("{") + text.count("[") > MAX_NESTING and _nesting(document) > MAX_NESTING:
        raise InvalidJson(f"the JSON is nested more than {MAX_NESTING} levels deep")
    if _SUSPECT_ESCAPE.search(text) and _has_unstorable_text(document):
        raise InvalidJson("JSON strings must not contain U+0000 or unpaired UTF-16 surrogates")

    event_type = document.get("type")
    if isinstance(event_type, str) and event_type in APPOINTMENT_EVENT_TYPES:
        try:
            event = AppointmentEvent.model_validate(document)
        except ValidationError as exc:
            raise InvalidPayload(_field_errors(exc)) from exc
        if event.data.organizationId != organization_id:
            raise _organization_mismatch()
        appointment = event.data.appointment
        return ParsedEvent(
            event_type=event.type,
            event_at=event.timestamp,
            appointment_id=appointment.id,
            appointment=document["data"]["appointment"],
            # A cancel event cancels even if its appointment object lacks the flag.
            canceled=appointment.canceled is True or event.type == "appointment.canceled",
        )

    try:
        other = OtherEvent.model_validate(document)
    except ValidationError as exc:
        raise InvalidPayload(_field_errors(exc)) from exc
    data = other.data or {}
    if "organizationId" in data and data["organizationId"] != organization_id:
        raise _organization_mismatch()
    subject = data.get("appointment")
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    return ParsedEvent(
        event_type=other.type,
        event_at=other.timestamp,
        appointment_id=subject_id if isinstance(subject_id, str) and subject_id else None,
        appointment=None,
        canceled=False,
    )


async def find_receiver(session: AsyncSession, *, organization_id: str) -> Receiver | None:
    """The connection a delivery for `organization_id` is addressed to, or None."""
    return await inbox.find_receiver(session, organization_id)


def _organization_mismatch() -> InvalidPayload:
    return InvalidPayload(
        [
            {
                "field": "data.organizationId",
                "message": "does not match the organisation in the webhook URL",
            }
        ]
    )


async def record_delivery(
    session: AsyncSession, *, connection_id: int, webhook_id: str, event: ParsedEvent
) -> IntakeOutcome:
    """Record one verified delivery in the caller's transaction; `duplicate` stores nothing."""
    inbox_event_id = await inbox.insert_inbox_event(
        session,
        source=SOURCE,
        connection_id=connection_id,
        external_id=webhook_id,
        event_type=event.event_type,
        subject_id=event.appointment_id[:64] if event.appointment_id else None,
        outcome=INBOX_IGNORED if event.appointment is None else INBOX_ACCEPTED,
    )
    if inbox_event_id is None:
        return IntakeOutcome(status="duplicate")
    if event.appointment is None or event.appointment_id is None:
        return IntakeOutcome(status="ignored", inbox_event_id=inbox_event_id)

    stored = await inbox.upsert_snapshot_if_newer(
        session,
        connection_id=connection_id,
        appointment_id=event.appointment_id,
        payload=event.appointment,
        event_at=event.event_at,
        event_type=event.event_type,
        canceled=event.canceled,
    )
    if not stored:
        await inbox.set_inbox_outcome(session, inbox_event_id, INBOX_STALE)
        return IntakeOutcome(status="stale", inbox_event_id=inbox_event_id)

    key = f"{connection_id}:{event.appointment_id}"
    job_id = await enqueue(
        session,
        SYNC_APPOINTMENT,
        {"connection_id": connection_id, "appointment_id": event.appointment_id},
        dedupe_key=f"{SYNC_APPOINTMENT}:{key}",
        serial_key=f"appointment:{key}",
    )
    return IntakeOutcome(
        status="accepted", inbox_event_id=inbox_event_id, job_id=job_id, coalesced=job_id is None
    )
