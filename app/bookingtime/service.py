"""The bookingtime intake: record verified, parsed deliveries in the caller's transaction (inbox
rows, each appointment's snapshot unless a newer one is stored, its `sync.appointment` job), and
the connections deliveries are addressed to. It never commits and never calls Graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.bookingtime.group_commit import GroupCommit
from app.bookingtime.parsing import ParsedEvent
from app.db import Database
from app.inbox import repository as inbox
from app.inbox.repository import NewInboxEvent, NewSnapshot, Receiver
from app.models.base import utcnow
from app.models.inbox_event import INBOX_ACCEPTED, INBOX_IGNORED, INBOX_STALE
from app.queue.repository import enqueue_many
from app.sync import tasks
from app.sync.repository import single_mailboxes

SOURCE = "bookingtime"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified, parsed delivery addressed to a connection."""

    connection_id: int
    webhook_id: str
    event: ParsedEvent


@dataclass(frozen=True, slots=True)
class IntakeOutcome:
    status: Literal["accepted", "ignored", "stale", "duplicate"]
    inbox_event_id: int | None = None
    job_id: int | None = None
    # True when the event joined a `sync.appointment` job already pending for the appointment:
    # that job reads the latest snapshot when it runs, so nothing is lost.
    coalesced: bool = False


async def record_deliveries(
    session: AsyncSession, deliveries: Sequence[Delivery]
) -> list[IntakeOutcome]:
    """Record verified deliveries in the caller's transaction, each with the outcome it would
    have had alone, in order: its inbox row, the snapshot unless a newer one is stored, and the
    appointment's `sync.appointment` job; a `duplicate` stores nothing. A few statements serve
    the whole list."""
    now = utcnow()
    outcomes: list[IntakeOutcome | None] = [None] * len(deliveries)
    fresh: dict[tuple[int, str], int] = {}  # inbox key → index of its first delivery
    for index, delivery in enumerate(deliveries):
        key = (delivery.connection_id, delivery.webhook_id)
        if key in fresh:
            outcomes[index] = IntakeOutcome(status="duplicate")
        else:
            fresh[key] = index
    inbox_ids = await inbox.insert_inbox_events(
        session, [_inbox_event(deliveries[index]) for index in fresh.values()], received_at=now
    )
    # Snapshots go in rounds that hold each appointment at most once: a later event of the same
    # appointment is then compared with the one just stored, as if it had come alone.
    rounds: list[dict[tuple[int, str], int]] = []
    for key, index in fresh.items():
        inbox_id = inbox_ids.get(key)
        event = deliveries[index].event
        if inbox_id is None:
            outcomes[index] = IntakeOutcome(status="duplicate")
        elif event.appointment is None or event.appointment_id is None:
            outcomes[index] = IntakeOutcome(status="ignored", inbox_event_id=inbox_id)
        else:
            subject = (deliveries[index].connection_id, event.appointment_id)
            free = next((r for r in rounds if subject not in r), None)
            if free is None:
                rounds.append(free := {})
            free[subject] = index
    stored: dict[int, tuple[int, str]] = {}  # index → its appointment key
    for round_ in rounds:
        snapshots = [_snapshot(deliveries[index]) for index in round_.values()]
        kept = await inbox.store_snapshots_if_newer(session, snapshots, now=now)
        stored.update((index, subject) for subject, index in round_.items() if subject in kept)

    stale = [i for round_ in rounds for i in round_.values() if i not in stored]
    await inbox.set_inbox_outcomes(
        session, [inbox_ids[_inbox_key(deliveries[i])] for i in stale], INBOX_STALE
    )
    for index in stale:
        outcomes[index] = IntakeOutcome(
            status="stale", inbox_event_id=inbox_ids[_inbox_key(deliveries[index])]
        )

    payloads = {stored[i]: deliveries[i].event.appointment or {} for i in sorted(stored)}
    mailboxes = await single_mailboxes(session, payloads)
    jobs = {i: tasks.sync_job(*stored[i], mailbox=mailboxes.get(stored[i])) for i in sorted(stored)}
    job_ids = await enqueue_many(session, list(jobs.values()), now=now)
    claimed: set[str] = set()
    for index, job in jobs.items():
        # The first delivery of an appointment gets its new job; later ones join it.
        job_id = None if job.dedupe_key in claimed else job_ids.get(job.dedupe_key)
        claimed.add(job.dedupe_key)
        outcomes[index] = IntakeOutcome(
            status="accepted",
            inbox_event_id=inbox_ids[_inbox_key(deliveries[index])],
            job_id=job_id,
            coalesced=job_id is None,
        )
    return [outcome for outcome in outcomes if outcome is not None]


def _inbox_key(delivery: Delivery) -> tuple[int, str]:
    return (delivery.connection_id, delivery.webhook_id)


def _inbox_event(delivery: Delivery) -> NewInboxEvent:
    event = delivery.event
    return NewInboxEvent(
        source=SOURCE,
        connection_id=delivery.connection_id,
        external_id=delivery.webhook_id,
        event_type=event.event_type,
        subject_id=event.appointment_id[:64] if event.appointment_id else None,
        outcome=INBOX_IGNORED if event.appointment is None else INBOX_ACCEPTED,
    )


def _snapshot(delivery: Delivery) -> NewSnapshot:
    event = delivery.event
    assert event.appointment is not None and event.appointment_id is not None
    return NewSnapshot(
        connection_id=delivery.connection_id,
        appointment_id=event.appointment_id,
        payload=event.appointment,
        event_at=event.event_at,
        event_type=event.event_type,
        canceled=event.canceled,
    )


class ReceiverDirectory:
    """Connection lookups for the intake, remembered briefly.

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
        self._database = database
        self._ttl = ttl_seconds
        self.clock = clock
        self._known: dict[str, tuple[float, Receiver]] = {}

    async def get(self, organization_id: str, *, fresh: bool = False) -> Receiver | None:
        """The organisation's connection, or None; `fresh` skips what is remembered."""
        now = self.clock()
        known = self._known.get(organization_id)
        if known is not None and not fresh and known[0] > now:
            return known[1]
        async with self._database.session() as session:
            receiver = await inbox.find_receiver(session, organization_id)
        if receiver is None:
            self._known.pop(organization_id, None)
        else:
            self._known[organization_id] = (now + self._ttl, receiver)
        return receiver

    def forget(self, organization_id: str) -> None:
        self._known.pop(organization_id, None)


@dataclass(frozen=True, slots=True)
class BookingtimeIntake:
    """The process's intake: its remembered connections, and the deliveries it records together
    (`app.bookingtime.group_commit`)."""

    receivers: ReceiverDirectory
    deliveries: GroupCommit[Delivery, IntakeOutcome]

    async def record(self, delivery: Delivery) -> IntakeOutcome:
        """Record one delivery; its outcome once it is committed."""
        return await self.deliveries.record(delivery)


def build_intake(database: Database) -> BookingtimeIntake:
    """The process's bookingtime intake (built once, in the app's lifespan)."""
    return BookingtimeIntake(
        receivers=ReceiverDirectory(database),
        deliveries=GroupCommit(database, record_deliveries),
    )
