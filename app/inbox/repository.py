"""Every query of the idempotent intake: the receiving connection, `inbox_event` rows and
`appointment` snapshots.

Writes are `INSERT … ON CONFLICT` statements, so concurrent deliveries are decided by the unique
constraints, never by a read-then-write race. They are Core statements on the tables, built once
per dialect: every webhook runs them, and building an ORM statement per call cost more than
executing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Appointment, Connection, InboxEvent


@dataclass(frozen=True, slots=True)
class Receiver:
    """What the intake needs of the connection a webhook is addressed to."""

    connection_id: int
    webhook_secret_encrypted: str
    # The secret the last rotation replaced and until when it is still accepted (None: none).
    previous_webhook_secret_encrypted: str | None = None
    previous_webhook_secret_expires_at: datetime | None = None


class NewInboxEvent(NamedTuple):
    """An `inbox_event` row to insert."""

    source: str
    connection_id: int
    external_id: str
    event_type: str
    subject_id: str | None
    outcome: str


class NewSnapshot(NamedTuple):
    """An `appointment` snapshot to store."""

    connection_id: int
    appointment_id: str
    payload: dict[str, Any]
    event_at: datetime
    event_type: str
    canceled: bool


_inbox = cast(Table, InboxEvent.__table__)
_appointment = cast(Table, Appointment.__table__)


def _insert_inbox(dialect: Any) -> Any:
    return (
        dialect.insert(_inbox)
        .on_conflict_do_nothing(index_elements=["source", "connection_id", "external_id"])
        .returning(_inbox.c.id, _inbox.c.connection_id, _inbox.c.external_id)
    )


def _upsert_snapshot(dialect: Any) -> Any:
    insert = dialect.insert(_appointment)
    return insert.on_conflict_do_update(
        index_elements=["connection_id", "appointment_id"],
        set_={
            "payload": insert.excluded.payload,
            "event_at": insert.excluded.event_at,
            "event_type": insert.excluded.event_type,
            "canceled": insert.excluded.canceled,
            "updated_at": insert.excluded.updated_at,
        },
        # `<=`, not `<`: event timestamps may be whole seconds, so two changes within one
        # second carry the same time; the last one received wins instead of being lost.
        where=_appointment.c.event_at <= insert.excluded.event_at,
    ).returning(_appointment.c.connection_id, _appointment.c.appointment_id)


_INSERT_INBOX = {"sqlite": _insert_inbox(sqlite), "postgresql": _insert_inbox(postgresql)}
_UPSERT_SNAPSHOT = {"sqlite": _upsert_snapshot(sqlite), "postgresql": _upsert_snapshot(postgresql)}
_SET_OUTCOME = (
    update(_inbox)
    .where(_inbox.c.id == bindparam("inbox_event_id"))
    .values(outcome=bindparam("new_outcome"))
)
_FIND_RECEIVER = select(
    _connection := cast(Table, Connection.__table__).c.id,
    Connection.__table__.c.webhook_secret_encrypted,
    Connection.__table__.c.previous_webhook_secret_encrypted,
    Connection.__table__.c.previous_webhook_secret_expires_at,
).where(Connection.__table__.c.organization_id == bindparam("organization_id"))


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def find_receiver(session: AsyncSession, organization_id: str) -> Receiver | None:
    """The connection of a bookingtime organisation, or None."""
    row = (await session.execute(_FIND_RECEIVER, {"organization_id": organization_id})).first()
    return None if row is None else Receiver(*row)


async def insert_inbox_events(
    session: AsyncSession, events: Sequence[NewInboxEvent], *, received_at: datetime
) -> dict[tuple[int, str], int]:
    """Insert inbox rows (one statement); the new rows' ids by (connection_id, external_id).
    A key that was already received is left out: it is a duplicate. The keys must be distinct.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction and then
    does nothing: the loser of a race sees a duplicate too.
    """
    if not events:
        return {}
    statement = _INSERT_INBOX[_dialect(session)]
    rows = [{**event._asdict(), "received_at": received_at} for event in events]
    result = await session.execute(statement, rows)
    return {(row.connection_id, row.external_id): row.id for row in result}


async def store_snapshots_if_newer(
    session: AsyncSession, snapshots: Sequence[NewSnapshot], *, now: datetime
) -> set[tuple[int, str]]:
    """Store appointment snapshots (one statement) unless the stored one is newer; the
    (connection_id, appointment_id) of those stored. The keys must be distinct."""
    if not snapshots:
        return set()
    rows = [{**snapshot._asdict(), "created_at": now, "updated_at": now} for snapshot in snapshots]
    result = await session.execute(_UPSERT_SNAPSHOT[_dialect(session)], rows)
    return {(row.connection_id, row.appointment_id) for row in result}


async def set_inbox_outcomes(
    session: AsyncSession, inbox_event_ids: list[int], outcome: str
) -> None:
    """Record what became of inbox events after they were inserted."""
    if inbox_event_ids:
        await session.execute(
            _SET_OUTCOME,
            [{"inbox_event_id": id_, "new_outcome": outcome} for id_ in inbox_event_ids],
        )
