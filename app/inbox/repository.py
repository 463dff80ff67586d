"""Every query of the idempotent intake: the receiving connection, `inbox_event` rows and
`appointment` snapshots.

Writes are `INSERT … ON CONFLICT` statements, so concurrent deliveries are decided by the unique
constraints, never by a read-then-write race. They are Core statements on the tables, built once
per dialect: every webhook runs them, and building an ORM statement per call cost more than
executing it.
"""

from __future__ import annotations

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
        .returning(_inbox.c.id)
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
    ).returning(_appointment.c.id)


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


async def insert_inbox_event(
    session: AsyncSession, event: NewInboxEvent, *, received_at: datetime
) -> int | None:
    """Insert an inbox row; its id, or None when its key was already received.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction and then
    does nothing: the loser of a race sees None too.
    """
    statement = _INSERT_INBOX[_dialect(session)]
    values = {**event._asdict(), "received_at": received_at}
    inserted: int | None = (await session.execute(statement, values)).scalar()
    return inserted


async def store_snapshot_if_newer(
    session: AsyncSession, snapshot: NewSnapshot, *, now: datetime
) -> bool:
    """Store an appointment snapshot unless the stored one is newer; whether it was stored."""
    values = {**snapshot._asdict(), "created_at": now, "updated_at": now}
    result = await session.execute(_UPSERT_SNAPSHOT[_dialect(session)], values)
    return result.first() is not None


async def set_inbox_outcome(session: AsyncSession, inbox_event_id: int, outcome: str) -> None:
    """Record what became of an inbox event after it was inserted."""
    await session.execute(_SET_OUTCOME, {"inbox_event_id": inbox_event_id, "new_outcome": outcome})
