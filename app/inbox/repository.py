"""Every query of the idempotent intake: the receiving connection, `inbox_event` rows and
`appointment` snapshots.

Writes are multi-row `INSERT … ON CONFLICT … RETURNING` statements, so concurrent deliveries are
decided by the unique constraints, never by a read-then-write race, and a batch of deliveries
costs a few statements, not a few per delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Appointment, Connection, InboxEvent

_inbox = cast(Table, InboxEvent.__table__)
_appointment = cast(Table, Appointment.__table__)
_connection = cast(Table, Connection.__table__)


@dataclass(frozen=True, slots=True)
class Receiver:
    """What the intake needs of the connection a webhook is addressed to."""

    connection_id: int
    webhook_secret_encrypted: str


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


async def find_receivers(
    session: AsyncSession, organization_ids: Sequence[str]
) -> list[Receiver | None]:
    """The connections of bookingtime organisations (None where there is none), in one query."""
    statement = select(
        _connection.c.organization_id, _connection.c.id, _connection.c.webhook_secret_encrypted
    ).where(_connection.c.organization_id.in_(set(organization_ids)))
    found = {
        organization_id: Receiver(connection_id, secret)
        for organization_id, connection_id, secret in (await session.execute(statement)).all()
    }
    return [found.get(organization_id) for organization_id in organization_ids]


@cache
def _statements(dialect: str) -> dict[str, Any]:
    # Built once and run as executemany ("insertmanyvalues": SQLAlchemy sends multi-row INSERTs);
    # building a multi-row statement per batch cost more than running it.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inbox = (
        insert(_inbox)
        .values(
            {column: bindparam(column, type_=_inbox.c[column].type) for column in _INBOX_COLUMNS}
        )
        .on_conflict_do_nothing(index_elements=["source", "connection_id", "external_id"])
        .returning(_inbox.c.id, _inbox.c.connection_id, _inbox.c.external_id)
    )
    new_snapshot = insert(_appointment).values(
        {
            column: bindparam(column, type_=_appointment.c[column].type)
            for column in _SNAPSHOT_COLUMNS
        }
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
    ).returning(_appointment.c.connection_id, _appointment.c.appointment_id)
    return {"inbox": inbox, "snapshot": snapshot}


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def insert_inbox_events(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> dict[tuple[int | None, str], int]:
    """Insert inbox rows; the new ids by (connection_id, external_id).

    A key already received (or repeated within `rows`) is skipped by the unique constraint, so it
    is missing from the result. On PostgreSQL a concurrent insert of the same key waits for the
    other transaction and then does nothing: the loser of a race sees it missing too.
    """
    if not rows:
        return {}
    result = await session.execute(_statements(_dialect(session))["inbox"], list(rows))
    return {
        (connection_id, external_id): inbox_id
        for inbox_id, connection_id, external_id in result.all()
    }


async def set_inbox_outcome(
    session: AsyncSession, inbox_event_ids: Sequence[int], outcome: str
) -> None:
    """Record what became of inbox events after they were inserted."""
    if inbox_event_ids:
        await session.execute(
            update(_inbox).where(_inbox.c.id.in_(inbox_event_ids)).values(outcome=outcome)
        )


async def stored_event_times(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], datetime]:
    """The stored snapshots' `event_at` by (connection_id, appointment_id)."""
    if not keys:
        return {}
    statement = select(
        _appointment.c.connection_id, _appointment.c.appointment_id, _appointment.c.event_at
    ).where(tuple_(_appointment.c.connection_id, _appointment.c.appointment_id).in_(list(keys)))
    return {
        (connection_id, appointment_id): event_at
        for connection_id, appointment_id, event_at in (await session.execute(statement)).all()
    }


async def upsert_snapshots_if_newer(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> set[tuple[int, str]]:
    """Store appointment snapshots unless the stored ones are newer; the keys stored.

    At most one row per (connection_id, appointment_id): PostgreSQL refuses to update a row twice
    in one statement.
    """
    if not rows:
        return set()
    result = await session.execute(_statements(_dialect(session))["snapshot"], list(rows))
    return {(row[0], row[1]) for row in result.all()}
