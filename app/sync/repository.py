"""All SQL of the sync jobs: load what plan() needs, and persist each action's outcome (mapping
row, sync record, employee status). Every function runs in the caller's session and transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.graph.schemas import Event
from app.models import Appointment, Connection, Employee, EventMapping, SyncRecord
from app.models.base import utcnow
from app.sync.planner import MappingState, listed_employees
from app.sync.settings import TranslationSettings, translation_settings

UNMAPPED_CODE = "unmapped_employee"


# --- reads ------------------------------------------------------------------------------------


def select_snapshot(
    connection_id: int, appointment_id: str
) -> Select[dict[str, Any], bool, datetime]:
    return select(Appointment.payload, Appointment.canceled, Appointment.updated_at).where(
        Appointment.connection_id == connection_id,
        Appointment.appointment_id == appointment_id,
    )


def select_employees(connection_id: int, booking_resource_ids: Sequence[str]) -> Select[str, str]:
    return select(Employee.booking_resource_id, Employee.mailbox).where(
        Employee.connection_id == connection_id,
        Employee.booking_resource_id.in_(booking_resource_ids),
    )


def select_mappings(
    connection_id: int, appointment_id: str
) -> Select[str, str, int, str | None, dict[str, str], bool, bool]:
    return (
        select(
            EventMapping.booking_resource_id,
            EventMapping.mailbox,
            EventMapping.generation,
            EventMapping.graph_event_id,
            EventMapping.field_hashes,
            EventMapping.deleted,
            EventMapping.detached,
        )
        .where(
            EventMapping.connection_id == connection_id,
            EventMapping.appointment_id == appointment_id,
        )
        .order_by(EventMapping.id)
    )


def select_unmapped_recorded(connection_id: int, appointment_id: str) -> Select[str | None]:
    return (
        select(SyncRecord.booking_resource_id)
        .where(
            SyncRecord.connection_id == connection_id,
            SyncRecord.appointment_id == appointment_id,
            SyncRecord.code == UNMAPPED_CODE,
        )
        .distinct()
    )


async def single_mailboxes(
    session: AsyncSession, payloads: Mapping[tuple[int, str], Mapping[str, Any]]
) -> dict[tuple[int, str], str]:
    """The one mailbox each appointment's mapped employees share, by (connection_id,
    appointment_id), where they share one (the usual single-employee appointment): its
    `sync.appointment` job then counts against that mailbox's limit of running jobs, which
    every worker process shares. A hint for the queue only: the run reads the mappings again,
    and may also delete an event from a mailbox the appointment has left."""
    listed = {
        key: listed_employees(payload.get("bookingResourceList"))
        for key, payload in payloads.items()
    }
    wanted: dict[int, set[str]] = {}
    for (connection_id, _), resources in listed.items():
        wanted.setdefault(connection_id, set()).update(resources)
    known: dict[tuple[int, str], str] = {}
    for connection_id, ids in wanted.items():
        if ids:
            rows = await session.execute(select_employees(connection_id, sorted(ids)))
            known.update(((connection_id, r.booking_resource_id), r.mailbox) for r in rows)
    single: dict[tuple[int, str], str] = {}
    for (connection_id, appointment_id), resources in listed.items():
        mapped = [known[(connection_id, r)] for r in resources if (connection_id, r) in known]
        if mapped and len({mailbox.casefold() for mailbox in mapped}) == 1:
            single[(connection_id, appointment_id)] = mapped[0]
    return single


async def get_connection(session: AsyncSession, connection_id: int) -> Connection | None:
    return await session.get(Connection, connection_id)


async def employee_mailbox(
    session: AsyncSession, connection_id: int, booking_resource_id: str
) -> str | None:
    """The mailbox the employee is mapped to, or None when it is not (or no longer) mapped."""
    mailbox: str | None = await session.scalar(
        select(Employee.mailbox).where(
            Employee.connection_id == connection_id,
            Employee.booking_resource_id == booking_resource_id,
        )
    )
    return mailbox


async def appointments_with_events(
    session: AsyncSession, connection_id: int, booking_resource_id: str | None
) -> set[str]:
    """The appointments with a live calbridge event (of the employee, or of any)."""
    live = select(EventMapping.appointment_id).where(
        EventMapping.connection_id == connection_id, EventMapping.deleted.is_(False)
    )
    if booking_resource_id is not None:
        live = live.where(EventMapping.booking_resource_id == booking_resource_id)
    return set(await session.scalars(live.distinct()))


async def snapshots(
    session: AsyncSession, connection_id: int
) -> list[tuple[str, dict[str, Any], bool]]:
    """Every stored appointment of the connection: (appointment_id, payload, canceled)."""
    rows = await session.execute(
        select(Appointment.appointment_id, Appointment.payload, Appointment.canceled).where(
            Appointment.connection_id == connection_id
        )
    )
    return [(row.appointment_id, row.payload, row.canceled) for row in rows]


@dataclass(frozen=True)
class SyncState:
    """Everything one run reads in its first short transaction."""

    connection: Connection
    settings: TranslationSettings  # the connection's (translation_settings)
    payload: dict[str, Any]
    canceled: bool
    employees: dict[str, str]  # booking resource id → mailbox
    mappings: list[MappingState]
    unmapped_recorded: frozenset[str]  # employees whose `unmapped` skip is already in history
    # When the delivery that stored this snapshot was received (its inbox_event.received_at).
    received_at: datetime | None = None


async def load_state(
    session: AsyncSession, connection_id: int, appointment_id: str
) -> SyncState | None:
    """The connection, snapshot, employee map and mapping rows; None without connection or
    snapshot. Only the employees the appointment lists are read (the planner looks up no others),
    and the `unmapped` history only when one of them is not mapped."""
    connection = await session.get(Connection, connection_id)
    if connection is None:
        return None
    snapshot = (await session.execute(select_snapshot(connection_id, appointment_id))).first()
    if snapshot is None:
        return None
    payload = dict(snapshot.payload)
    listed = listed_employees(payload.get("bookingResourceList"))
    employees: dict[str, str] = {}
    if listed:
        rows = await session.execute(select_employees(connection_id, listed))
        employees = {row.booking_resource_id: row.mailbox for row in rows}
    mappings = [
        MappingState(
            booking_resource_id=row.booking_resource_id,
            mailbox=row.mailbox,
            generation=row.generation,
            graph_event_id=row.graph_event_id,
            field_hashes=dict(row.field_hashes or {}),
            deleted=row.deleted,
            detached=row.detached,
        )
        for row in await session.execute(select_mappings(connection_id, appointment_id))
    ]
    recorded: frozenset[str] = frozenset()
    if any(resource not in employees for resource in listed):
        records = await session.scalars(select_unmapped_recorded(connection_id, appointment_id))
        recorded = frozenset(r for r in records if r)
    return SyncState(
        connection=connection,
        settings=translation_settings(connection),
        payload=payload,
        canceled=snapshot.canceled or payload.get("canceled") is True,
        employees=employees,
        mappings=mappings,
        unmapped_recorded=recorded,
        received_at=snapshot.updated_at,
    )


# --- writes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One appointment's event in one employee's mailbox: what every row written here is about."""

    connection_id: int
    appointment_id: str | None  # None: about the employee or connection (history only)
    booking_resource_id: str | None  # None: about the whole appointment (history only)
    mailbox: str | None

    @property
    def resource(self) -> str:
        """The employee, which every mapping row has."""
        if self.booking_resource_id is None:
            raise ValueError("a mapping row belongs to one employee")
        return self.booking_resource_id


def _of_employee(target: Target) -> ColumnElement[bool]:
    return and_(
        EventMapping.connection_id == target.connection_id,
        EventMapping.appointment_id == target.appointment_id,
        EventMapping.booking_resource_id == target.resource,
    )


async def ensure_intent(session: AsyncSession, target: Target, *, generation: int) -> None:
    """The row of a create about to be sent (no event id yet); a retried create keeps its row."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(EventMapping)
        .values(
            connection_id=target.connection_id,
            appointment_id=target.appointment_id,
            booking_resource_id=target.resource,
            mailbox=target.mailbox or "",
            generation=generation,
            field_hashes={},
            deleted=False,
            detached=False,
        )
        .on_conflict_do_nothing(
            index_elements=["connection_id", "appointment_id", "booking_resource_id", "generation"]
        )
    )
    await session.execute(statement)


async def save_created(
    session: AsyncSession,
    target: Target,
    *,
    generation: int,
    event: Event,
    field_hashes: dict[str, str],
) -> None:
    """Store a created (or adopted) event on its generation's row (added if it is missing)."""
    statement = (
        update(EventMapping)
        .where(_of_employee(target), EventMapping.generation == generation)
        .values(
            mailbox=target.mailbox or "",
            graph_event_id=event.id,
            ical_uid=event.ical_uid,
            change_key=event.change_key,
            field_hashes=dict(field_hashes),
            deleted=False,
            updated_at=utcnow(),
        )
        .returning(EventMapping.id)
        .execution_options(synchronize_session=False)
    )
    if (await session.execute(statement)).first() is None:  # no intent row (it is written first)
        await ensure_intent(session, target, generation=generation)
        await session.execute(statement)


async def save_updated(
    session: AsyncSession, target: Target, *, event: Event, field_hashes: dict[str, str]
) -> None:
    """Store the new changeKey and hashes after a PATCH."""
    await session.execute(
        update(EventMapping)
        .where(
            _of_employee(target),
            EventMapping.deleted.is_(False),
            EventMapping.graph_event_id == event.id,
        )
        .values(
            change_key=event.change_key,
            ical_uid=func.coalesce(event.ical_uid, EventMapping.ical_uid),
            field_hashes=dict(field_hashes),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


async def mark_deleted(
    session: AsyncSession, target: Target, *, graph_event_id: str | None
) -> None:
    """Turn the rows of a deleted (or vanished) event in the target's mailbox into tombstones."""
    same_event = (
        EventMapping.graph_event_id.is_(None)
        if graph_event_id is None
        else EventMapping.graph_event_id == graph_event_id
    )
    rows = await session.execute(
        select(EventMapping.id, EventMapping.mailbox).where(
            _of_employee(target), EventMapping.deleted.is_(False), same_event
        )
    )
    mailbox = (target.mailbox or "").strip().casefold()
    ids = [row.id for row in rows if row.mailbox.strip().casefold() == mailbox]
    if ids:
        await session.execute(
            update(EventMapping)
            .where(EventMapping.id.in_(ids))
            .values(deleted=True, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def add_record(
    session: AsyncSession,
    target: Target,
    *,
    job_id: int | None,
    action: str,
    status: str,
    code: str,
    message: str,
    details: dict[str, Any] | None,
    duration_ms: int | None,
    graph_request_id: str | None,
) -> None:
    """Add one line to the sync history."""
    await session.execute(
        insert(SyncRecord).values(
            connection_id=target.connection_id,
            appointment_id=target.appointment_id,
            booking_resource_id=target.booking_resource_id,
            mailbox=target.mailbox,
            job_id=job_id,
            action=action,
            status=status,
            code=code,
            message=message,
            details=details,
            duration_ms=duration_ms,
            graph_request_id=graph_request_id,
            created_at=utcnow(),
        )
    )


async def set_employee_status(
    session: AsyncSession,
    *,
    connection_id: int,
    booking_resource_id: str,
    now: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Success (no error code): `last_success_at` set, error cleared; else the error set."""
    values: dict[str, Any]
    if error_code is None:
        values = {
            "last_success_at": now,
            "last_error_at": None,
            "last_error_code": None,
            "last_error_message": None,
        }
    else:
        values = {
            "last_error_at": now,
            "last_error_code": error_code,
            "last_error_message": error_message,
        }
    await session.execute(
        update(Employee)
        .where(
            Employee.connection_id == connection_id,
            Employee.booking_resource_id == booking_resource_id,
        )
        .values(**values, updated_at=now)
        .execution_options(synchronize_session=False)
    )
