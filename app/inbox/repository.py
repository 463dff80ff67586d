"""Every query of the idempotent intake: the receiving connection, `inbox_event` rows and
`appointment` snapshots.

Writes are multi-row `INSERT … ON CONFLICT … RETURNING` statements, so concurrent deliveries are
decided by the unique constraints, never by a read-then-write race, and a batch of deliveries
costs a few statements, not a few per delivery. They are the intake's hot path, so they are plain
SQL run inside a unit of work (`Database.run_unit`: on SQLite the whole batch as synchronous
driver calls, usually on the event loop's thread), skipping the SQL compiler: fixed SQL text,
values converted by the dialect's own type processors (so the rows read back exactly as if
SQLAlchemy had written them), except the snapshot's JSON, which pydantic-core serialises in a
third of `json.dumps`'s time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import chain
from typing import Any, Literal, NamedTuple, TypeVar, cast

from pydantic_core import to_json
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Statements, from_driver, memoized, param_marker, to_driver
from app.models import Appointment, Connection, InboxEvent

_inbox = cast(Table, InboxEvent.__table__)
_appointment = cast(Table, Appointment.__table__)
_connection = cast(Table, Connection.__table__)

T = TypeVar("T")

# Rows per statement: far below SQLite's 32,766 and PostgreSQL's 65,535 parameters.
_ROWS_PER_STATEMENT = 256


@dataclass(frozen=True, slots=True)
class Receiver:
    """What the intake needs of the connection a webhook is addressed to."""

    connection_id: int
    webhook_secret_encrypted: str
    # The secret the last rotation replaced and until when it is still accepted (None: none).
    previous_webhook_secret_encrypted: str | None = None
    previous_webhook_secret_expires_at: datetime | None = None


class NewInboxEvent(NamedTuple):
    """An `inbox_event` row to insert (its `received_at` is the batch's)."""

    source: str
    connection_id: int
    external_id: str
    event_type: str
    subject_id: str | None
    outcome: str


class NewSnapshot(NamedTuple):
    """An `appointment` snapshot to store (its `created_at`/`updated_at` are the batch's)."""

    connection_id: int
    appointment_id: str
    payload: dict[str, Any]
    event_at: datetime
    event_type: str
    canceled: bool


async def find_receivers(
    session: AsyncSession, organization_ids: Sequence[str]
) -> list[Receiver | None]:
    """The connections of bookingtime organisations (None where there is none), in one query."""
    statement = select(
        _connection.c.organization_id,
        _connection.c.id,
        _connection.c.webhook_secret_encrypted,
        _connection.c.previous_webhook_secret_encrypted,
        _connection.c.previous_webhook_secret_expires_at,
    ).where(_connection.c.organization_id.in_(set(organization_ids)))
    found = {
        organization_id: Receiver(connection_id, secret, previous, previous_expires_at)
        for organization_id, connection_id, secret, previous, previous_expires_at in (
            await session.execute(statement)
        ).all()
    }
    return [found.get(organization_id) for organization_id in organization_ids]


def insert_inbox_events(
    db: Statements, events: Sequence[NewInboxEvent], *, received_at: datetime
) -> dict[tuple[int, str], int]:
    """Insert inbox rows; the new ids by (connection_id, external_id).

    A key already received (or repeated within `events`) is skipped by the unique constraint, so
    it is missing from the result. On PostgreSQL a concurrent insert of the same key waits for
    the other transaction and then does nothing: the loser of a race sees it missing too.
    """
    stamp = to_driver(db.dialect, _inbox.c.received_at)(received_at)
    inserted: dict[tuple[int, str], int] = {}
    for chunk in _chunks(events):
        sql = _sql(db.dialect.name, "inbox", len(chunk))
        rows = db.rows(sql, tuple(chain.from_iterable((*event, stamp) for event in chunk)))
        inserted.update(
            ((connection_id, external_id), id_) for id_, connection_id, external_id in rows
        )
    return inserted


def upsert_snapshots_if_newer(
    db: Statements, snapshots: Sequence[NewSnapshot], *, now: datetime
) -> set[tuple[int, str]]:
    """Store appointment snapshots unless the stored ones are newer; the keys stored.

    At most one row per (connection_id, appointment_id): PostgreSQL refuses to update a row twice
    in one statement.
    """
    event_at = memoized(to_driver(db.dialect, _appointment.c.event_at))
    canceled = to_driver(db.dialect, _appointment.c.canceled)
    stamp = to_driver(db.dialect, _appointment.c.updated_at)(now)
    stored: set[tuple[int, str]] = set()
    for chunk in _chunks(snapshots):
        rows = db.rows(
            _sql(db.dialect.name, "snapshot", len(chunk)),
            tuple(
                chain.from_iterable(
                    (
                        s.connection_id,
                        s.appointment_id,
                        to_json(s.payload).decode(),
                        event_at(s.event_at),
                        s.event_type,
                        canceled(s.canceled),
                        stamp,
                        stamp,
                    )
                    for s in chunk
                )
            ),
        )
        stored.update((connection_id, appointment_id) for connection_id, appointment_id in rows)
    return stored


def set_inbox_outcome(db: Statements, inbox_event_ids: Sequence[int], outcome: str) -> None:
    """Record what became of inbox events after they were inserted."""
    for chunk in _chunks(inbox_event_ids):
        db.rows(_sql(db.dialect.name, "outcome", len(chunk)), (outcome, *chunk))


def stored_event_times(
    db: Statements, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], datetime]:
    """The stored snapshots' `event_at` by (connection_id, appointment_id)."""
    read = from_driver(db.dialect, _appointment.c.event_at)
    found: dict[tuple[int, str], datetime] = {}
    for chunk in _chunks(keys):
        sql = _sql(db.dialect.name, "event_times", len(chunk))
        rows = db.rows(sql, tuple(chain.from_iterable(chunk)))
        found.update(((c, a), read(at)) for c, a, at in rows)
    return found


# --- the lean write path --------------------------------------------------------------------

_INBOX_COLUMNS = (*NewInboxEvent._fields, "received_at")
_SNAPSHOT_COLUMNS = (*NewSnapshot._fields, "created_at", "updated_at")
# Sent as JSON text: PostgreSQL casts it to jsonb, SQLite stores the text.
_JSON_COLUMNS = frozenset({"payload"})

_STATEMENTS = {
    "inbox": (
        _INBOX_COLUMNS,
        """INSERT INTO inbox_event ({columns}) VALUES {values}
ON CONFLICT (source, connection_id, external_id) DO NOTHING
RETURNING id, connection_id, external_id""",
    ),
    # `<=`, not `<`: event timestamps may be whole seconds, so two changes within one second
    # carry the same time; the last one received wins instead of the second being lost.
    "snapshot": (
        _SNAPSHOT_COLUMNS,
        """INSERT INTO appointment ({columns}) VALUES {values}
ON CONFLICT (connection_id, appointment_id) DO UPDATE SET payload = excluded.payload,
event_at = excluded.event_at, event_type = excluded.event_type, canceled = excluded.canceled,
updated_at = excluded.updated_at
WHERE appointment.event_at <= excluded.event_at
RETURNING connection_id, appointment_id""",
    ),
}


_LOOKUPS = {
    "outcome": ("UPDATE inbox_event SET outcome = {mark} WHERE id IN ({rows})", "{mark}", ", "),
    "event_times": (
        "SELECT connection_id, appointment_id, event_at FROM appointment WHERE {rows}",
        "(connection_id = {mark} AND appointment_id = {mark})",
        " OR ",
    ),
}

StatementName = Literal["inbox", "snapshot", "outcome", "event_times"]


@cache
def _sql(dialect_name: str, statement: StatementName, rows: int) -> str:
    """The statement for `rows` rows (or ids, or keys), in the dialect's parameter style."""
    value = param_marker(dialect_name)
    if statement in _LOOKUPS:
        template, row, separator = _LOOKUPS[statement]
        return template.format(mark=value, rows=separator.join([row.format(mark=value)] * rows))
    columns, template = _STATEMENTS[statement]
    row = ", ".join(
        f"CAST({value} AS JSONB)" if column in _JSON_COLUMNS and dialect_name != "sqlite" else value
        for column in columns
    )
    return template.format(columns=", ".join(columns), values=", ".join([f"({row})"] * rows))


def _chunks(rows: Sequence[T]) -> list[Sequence[T]]:
    return [rows[i : i + _ROWS_PER_STATEMENT] for i in range(0, len(rows), _ROWS_PER_STATEMENT)]
