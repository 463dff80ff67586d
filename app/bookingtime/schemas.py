"""The bookingtime webhook body (reference/bookingtime.md §1.6) as pydantic models.

Field names are bookingtime's own. Fields calbridge does not read are allowed; the intake keeps
the appointment object as received, so the models validate what calbridge reads and ignore the
rest (collecting it as extras would double the validation's cost).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
)

from app.sync.translate import EARLIEST, LATEST

APPOINTMENT_EVENT_TYPES = frozenset(
    {
        "appointment.created",
        "appointment.updated",
        "appointment.moved",
        "appointment.canceled",
    }
)
AppointmentEventType = Literal[
    "appointment.created",
    "appointment.updated",
    "appointment.moved",
    "appointment.canceled",
]

# The payload's limits, checked before anything reads it (docs/webhooks.md): what one delivery
# can cost the intake and its sync job is bounded by these, not by the body's size alone.
#: Entries in any JSON array, `bookingResourceList` included (one sync target per employee).
MAX_LIST_ITEMS = 100
#: Characters in any JSON string (object keys included)...
MAX_STRING_CHARS = 4_000
#: ...except in these free-text fields, which the Outlook event's body carries.
MAX_TEXT_CHARS = 16_000
LONG_TEXT_FIELDS = frozenset({"description", "notes"})
#: JSON values (objects, arrays, strings, numbers, literals) in the whole document.
MAX_VALUES = 10_000

_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
# An IANA zone name by shape only: the sync engine falls back to UTC for a zone it does not know,
# and rejecting events because a host lacks tzdata would lose them.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")


def _iso_text(value: Any) -> Any:
    # pydantic would also take Unix numbers (and numeric strings); the contract is ISO-8601 text.
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO-8601 date-time with an offset, e.g. 2025-06-01T08:00:00Z")
    return value


_RANGE = f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"


def _to_utc(value: datetime) -> datetime:
    try:
        moment = value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:00:00-05:00
        raise ValueError(f"date-time out of range: {_RANGE}") from exc
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"date-time out of range: {_RANGE}")
    return moment


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_to_utc)]
ZoneName = Annotated[StrictStr, Field(max_length=64, pattern=f"^{_ZONE_NAME.pattern}$")]


class BookingtimeAppointment(BaseModel):
    """An appointment: the full current state, as bookingtime's `APPOINTMENT` entity."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": True})

    id: StrictStr = Field(
        min_length=1, max_length=64, examples=["edAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    )
    start: IsoDatetime
    end: IsoDatetime
    timeZone: ZoneName | None = Field(default=None, examples=["Europe/Berlin"])
    canceled: StrictBool | None = None


class AppointmentEventData(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": True})

    organizationId: StrictStr = Field(
        min_length=1, max_length=64, examples=["f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    )
    appointment: BookingtimeAppointment


class AppointmentEvent(BaseModel):
    """`appointment.created | updated | moved | canceled`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": True})

    type: AppointmentEventType
    timestamp: IsoDatetime
    data: AppointmentEventData


class OtherEvent(BaseModel):
    """Any other event type: recorded as ignored, so only its type and time must be valid."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr = Field(min_length=1, max_length=128)
    timestamp: IsoDatetime
    data: dict[str, Any] | None = None


class IntakeResult(BaseModel):
    """The answer to a webhook delivery that was stored (`202`)."""

    status: Literal["accepted", "ignored", "stale"]
    inbox_event_id: int
    job_id: int | None = Field(
        description="the `sync.appointment` job enqueued; null when none was (ignored, stale) "
        "or when the event coalesced into a job already pending for the appointment"
    )
    coalesced: bool = Field(
        description="true when a pending job for this appointment already existed and will "
        "read this newer snapshot"
    )


class DuplicateResult(BaseModel):
    """The answer to a delivery whose `webhook-id` was already received (`200`)."""

    status: Literal["duplicate"]


EXAMPLE_EVENT: dict[str, Any] = {
    "type": "appointment.created",
    "timestamp": "2025-06-01T08:00:00Z",
    "data": {
        "organizationId": "f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "appointment": {
            "class": "APPOINTMENT",
            "id": "edAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "customId": None,
            "start": "2025-06-02T10:00:00+02:00",
            "end": "2025-06-02T11:00:00+02:00",
            "duration": 60,
            "timeZone": "Europe/Berlin",
            "name": "Beratungsgespräch",
            "description": "",
            "notes": "Bitte Unterlagen mitbringen",
            "canceled": False,
            "moved": False,
            "address": {
                "name": "",
                "extra": "",
                "street": "Musterstr. 1",
                "zip": "20095",
                "city": "Hamburg",
                "country": "DE",
            },
            "customer": {
                "id": "d3AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "gender": "FEMALE",
                "firstName": "Erika",
                "lastName": "Musterfrau",
                "email": "erika@example.com",
                "mobile": "+491701234567",
            },
            "bookingResourceList": [
                {
                    "class": "BOOKING_RESOURCE",
                    "id": "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "type": "EMPLOYEE",
                    "firstName": "Max",
                    "lastName": "Mustermann",
                    "email": "max@firma.de",
                }
            ],
            "bookingTemplate": {
                "id": "fcAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "name": "Beratung 60 min",
            },
        },
    },
}
