"""The bookingtime intake: parse a verified delivery, then record it in the caller's transaction.

Recording inserts the inbox rows, stores each appointment's snapshot when it is not older than the
stored one and enqueues `sync.appointment`, for a whole batch of deliveries at once (group
commit: app/inbox/group_commit.py), as one plain-SQL unit of work. It never commits and never
calls Graph.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.bookingtime.schemas import APPOINTMENT_EVENT_TYPES, AppointmentEvent, OtherEvent
from app.db import Database, Statements, run_in_session
from app.inbox import repository as inbox
from app.inbox.group_commit import GroupCommitter
from app.inbox.repository import NewInboxEvent, NewSnapshot, Receiver
from app.models.base import utcnow
from app.models.inbox_event import INBOX_ACCEPTED, INBOX_IGNORED, INBOX_STALE
from app.queue.repository import insert_jobs
from app.sync.jobs import sync_job
from app.sync.repository import single_mailboxes

SOURCE = "bookingtime"

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


def _finite_float(text: str) -> float:
    # `1e400` is valid JSON syntax but no double: Python would read it as infinity and store
    # `Infinity`, which is not JSON (PostgreSQL's jsonb refuses it).
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


# Built once: `json.loads` with any option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


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
        document = _DECODER.decode(text)
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


def _organization_mismatch() -> InvalidPayload:
    return InvalidPayload(
        [
            {
                "field": "data.organizationId",
                "message": "does not match the organisation in the webhook URL",
            }
        ]
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified, parsed delivery addressed to a connection."""

    connection_id: int
    webhook_id: str
    event: ParsedEvent


async def record_deliveries(
    session: AsyncSession, deliveries: Sequence[Delivery]
) -> list[IntakeOutcome]:
    """`record_deliveries_in` in the caller's session and transaction."""
    return await run_in_session(session, lambda db: record_deliveries_in(db, deliveries))


def record_deliveries_in(db: Statements, deliveries: Sequence[Delivery]) -> list[IntakeOutcome]:
    """Record verified deliveries in the unit of work's transaction, with the outcome each would
    have had if recorded one after another in this order; a `duplicate` stores nothing."""
    now = utcnow()
    outcomes: list[IntakeOutcome | None] = [None] * len(deliveries)
    inserted = inbox.insert_inbox_events(
        db,
        [
            NewInboxEvent(
                source=SOURCE,
                connection_id=d.connection_id,
                external_id=d.webhook_id,
                event_type=d.event.event_type,
                subject_id=d.event.appointment_id[:64] if d.event.appointment_id else None,
                outcome=INBOX_IGNORED if d.event.appointment is None else INBOX_ACCEPTED,
            )
            for d in deliveries
        ],
        received_at=now,
    )

    # Appointment events by appointment, in arrival order; the first delivery of a webhook id
    # owns its inbox row, any later one in the same batch is a duplicate.
    owner: dict[tuple[int, str], int] = {}
    by_appointment: dict[tuple[int, str], list[int]] = {}
    for index, d in enumerate(deliveries):
        inbox_id = inserted.get((d.connection_id, d.webhook_id))
        if inbox_id is None or owner.setdefault((d.connection_id, d.webhook_id), index) != index:
            outcomes[index] = IntakeOutcome(status="duplicate")
        elif d.event.appointment is None or d.event.appointment_id is None:
            outcomes[index] = IntakeOutcome(status="ignored", inbox_event_id=inbox_id)
        else:
            by_appointment.setdefault((d.connection_id, d.event.appointment_id), []).append(index)

    # Per appointment the newest event is written (on equal times the last received, as the
    # one-by-one order would leave it); the others only need their outcome.
    winners = {
        key: max(indexes, key=lambda i: (deliveries[i].event.event_at, i))
        for key, indexes in by_appointment.items()
    }
    contested = [key for key, indexes in by_appointment.items() if len(indexes) > 1]
    stored_before = inbox.stored_event_times(db, contested)
    snapshots = []
    for (connection_id, appointment_id), i in winners.items():
        event = deliveries[i].event
        assert event.appointment is not None  # only appointment events are in by_appointment
        snapshots.append(
            NewSnapshot(
                connection_id=connection_id,
                appointment_id=appointment_id,
                payload=event.appointment,
                event_at=event.event_at,
                event_type=event.event_type,
                canceled=event.canceled,
            )
        )
    stored = inbox.upsert_snapshots_if_newer(db, snapshots, now=now)
    payloads = {(s.connection_id, s.appointment_id): s.payload for s in snapshots}
    mailboxes = single_mailboxes(db, {key: payloads[key] for key in stored})
    sync_jobs = {
        key: sync_job(*key, mailbox=mailboxes.get(key)) for key in winners if key in stored
    }
    job_ids = insert_jobs(db, list(sync_jobs.values()))

    stale: list[int] = []
    for key, indexes in by_appointment.items():
        # One by one, an event is stored when it is not older than what is stored by then.
        newest = stored_before.get(key)
        job = sync_jobs.get(key)
        job_id = None if job is None else job_ids.get(job.dedupe_key)
        for index in indexes:
            d = deliveries[index]
            inbox_id = inserted[(d.connection_id, d.webhook_id)]
            if key not in stored or (newest is not None and d.event.event_at < newest):
                stale.append(inbox_id)
                outcomes[index] = IntakeOutcome(status="stale", inbox_event_id=inbox_id)
                continue
            newest = d.event.event_at
            # The first accepted event of the batch is the one that created the job.
            outcomes[index] = IntakeOutcome(
                status="accepted", inbox_event_id=inbox_id, job_id=job_id, coalesced=job_id is None
            )
            job_id = None
    inbox.set_inbox_outcome(db, stale, INBOX_STALE)
    assert all(outcome is not None for outcome in outcomes)  # every branch above sets one
    return cast(list[IntakeOutcome], outcomes)


class ReceiverDirectory:
    """Connection lookups for the intake, batched across requests and remembered briefly.

    A remembered connection may be up to `ttl_seconds` old. That is safe: a delivery that fails
    to verify against a remembered secret is checked again against a fresh lookup (so a new
    secret works at once; the old one keeps working for at most the ttl), and a delivery for a
    deleted connection is refused by the inbox's foreign key. Unknown organisations are never
    remembered.
    """

    def __init__(
        self,
        database: Database,
        *,
        ttl_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup: GroupCommitter[str, Receiver | None] = GroupCommitter(
            database, inbox.find_receivers
        )
        self._ttl = ttl_seconds
        self.clock = clock
        self._known: dict[str, tuple[float, Receiver]] = {}

    async def get(self, organization_id: str, *, fresh: bool = False) -> Receiver | None:
        """The organisation's connection, or None; `fresh` skips what is remembered."""
        now = self.clock()
        known = self._known.get(organization_id)
        if known is not None and not fresh and known[0] > now:
            return known[1]
        receiver = await self._lookup.submit(organization_id)
        if receiver is None:
            self._known.pop(organization_id, None)
        else:
            self._known[organization_id] = (now + self._ttl, receiver)
        return receiver

    def forget(self, organization_id: str) -> None:
        self._known.pop(organization_id, None)

    async def close(self) -> None:
        await self._lookup.close()


@dataclass(frozen=True, slots=True)
class BookingtimeIntake:
    """The process's intake: connection lookups and writes, each batched across requests."""

    receivers: ReceiverDirectory
    deliveries: GroupCommitter[Delivery, IntakeOutcome]

    async def close(self) -> None:
        await self.deliveries.close()
        await self.receivers.close()


def build_intake(database: Database) -> BookingtimeIntake:
    """The process's bookingtime intake (built once, in the app's lifespan)."""
    return BookingtimeIntake(
        receivers=ReceiverDirectory(database),
        deliveries=GroupCommitter(database, unit=record_deliveries_in),
    )
