"""Every query of the idempotent intake: the receiving connection, `inbox_event` rows and
`appointment` snapshots.

Writes are single `INSERT … ON CONFLICT … RETURNING` statements, so concurrent deliveries are
decided by the unique constraints, never by a read-then-write race. The statements are built
once per dialect and run with bound parameters: the intake's cost is mostly per statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Executable, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Appointment, Connection, InboxEvent
from app.models.base import utcnow

_inbox = cast(Table, InboxEvent.__table__)
_appointment = cast(Table, Appointment.__table__)
_connection = cast(Table, Connection.__table__)


@dataclass(frozen=True, slots=True)
class Receiver:
    """What the intake needs of the connection a webhook is addressed to."""

    connection_id: int
    webhook_secret_encrypted: str


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


@cache
def _statements(dialect: str) -> dict[str, Executable]:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inbox = (
        insert(_inbox)
        .values({column: bindparam(column) for column in _INBOX_COLUMNS})
        .on_conflict_do_nothing(index_elements=["source", "connection_id", "external_id"])
        .returning(_inbox.c.id)
    )
    new_snapshot = insert(_appointment).values(
        {column: bindparam(column) for column in _SNAPSHOT_COLUMNS}
    )
    excluded = new_snapshot.excluded
    snapshot = new_snapshot.on_conflict_do_update(
        index_elements=["connection_id", "appointment_id"],
        set_={
            column: excluded[column]
            for column in ("payload", "event_at", "event_type", "canceled", "updated_at")
        },
        # `<=`, not `<`: event timestamps may be whole seconds, so two changes within one second
        # carry the same time; the last one received wins instead of the second being lost.
        where=_appointment.c.event_at <= excluded.event_at,
    ).returning(_appointment.c.id)
    return {"inbox": inbox, "snapshot": snapshot}


_INBOX_COLUMNS = (
    "source",
    "connection_id",
    "external_id",
    "event_type",
    "subject_id",
    "outcome",
    "received_at",
)
_SNAPSHOT_COLUMNS = (
    "connection_id",
    "appointment_id",
    "payload",
    "event_at",
    "event_type",
    "canceled",
    "created_at",
    "updated_at",
)
_RECEIVER = select(_connection.c.id, _connection.c.webhook_secret_encrypted).where(
    _connection.c.organization_id == bindparam("organization_id")
)
_SET_OUTCOME = (
    update(_inbox).where(_inbox.c.id == bindparam("inbox_id")).values(outcome=bindparam("outcome"))
)


async def find_receiver(session: AsyncSession, organization_id: str) -> Receiver | None:
    """The connection of a bookingtime organisation, reduced to what the intake reads."""
    row = (await session.execute(_RECEIVER, {"organization_id": organization_id})).first()
    return None if row is None else Receiver(row[0], row[1])


async def insert_inbox_event(
    session: AsyncSession,
    *,
    source: str,
    connection_id: int,
    external_id: str,
    event_type: str,
    subject_id: str | None,
    outcome: str,
) -> int | None:
    """The new row's id, or None when this (source, connection, external id) was received.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction and then
    does nothing, so the loser of a race sees None too.
    """
    params: dict[str, Any] = {
        "source": source,
        "connection_id": connection_id,
        "external_id": external_id,
        "event_type": event_type,
        "subject_id": subject_id,
        "outcome": outcome,
        "received_at": utcnow(),
    }
    statement = _statements(_dialect(session))["inbox"]
    result: int | None = (await session.execute(statement, params)).scalar_one_or_none()
    return result


async def set_inbox_outcome(session: AsyncSession, inbox_event_id: int, outcome: str) -> None:
    """Record what became of an inbox event after it was inserted."""
    await session.execute(_SET_OUTCOME, {"inbox_id": inbox_event_id, "outcome": outcome})


async def upsert_snapshot_if_newer(
    session: AsyncSession,
    *,
    connection_id: int,
    appointment_id: str,
    payload: dict[str, Any],
    event_at: datetime,
    event_type: str,
    canceled: bool,
) -> bool:
    """Store the appointment's snapshot unless the stored one is newer; True when stored."""
    now = utcnow()
    params: dict[str, Any] = {
        "connection_id": connection_id,
        "appointment_id": appointment_id,
        "payload": payload,
        "event_at": event_at,
        "event_type": event_type,
        "canceled": canceled,
        "created_at": now,
        "updated_at": now,
    }
    statement = _statements(_dialect(session))["snapshot"]
    return (await session.execute(statement, params)).scalar_one_or_none() is not None
