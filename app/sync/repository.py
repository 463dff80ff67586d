"""The sync jobs' reads: what plan() needs, and the lookups of the intake and resync (their
writes are in outcome_repository.py). Every function runs in the caller's session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Appointment, Connection, Employee, EventMapping, SyncRecord
from app.sync.planner import MappingState, listed_employees
from app.sync.settings import TranslationSettings, translation_settings

UNMAPPED_CODE = "unmapped_employee"


# The statements every sync job runs are Core statements on the tables, built once with bind
# parameters: building them per call (and going through the ORM's bulk paths) cost a job more
# than running them.
_appointment = cast(Table, Appointment.__table__)
_employee = cast(Table, Employee.__table__)
_mapping = cast(Table, EventMapping.__table__)
_record = cast(Table, SyncRecord.__table__)

SELECT_SNAPSHOT = select(
    _appointment.c.payload, _appointment.c.canceled, _appointment.c.updated_at
).where(
    _appointment.c.connection_id == bindparam("connection_id"),
    _appointment.c.appointment_id == bindparam("appointment_id"),
)
SELECT_EMPLOYEES = select(_employee.c.booking_resource_id, _employee.c.mailbox).where(
    _employee.c.connection_id == bindparam("connection_id"),
    _employee.c.booking_resource_id.in_(bindparam("booking_resource_ids", expanding=True)),
)
SELECT_MAPPINGS = (
    select(
        _mapping.c.booking_resource_id,
        _mapping.c.mailbox,
        _mapping.c.generation,
        _mapping.c.graph_event_id,
        _mapping.c.field_hashes,
        _mapping.c.deleted,
        _mapping.c.detached,
    )
    .where(
        _mapping.c.connection_id == bindparam("connection_id"),
        _mapping.c.appointment_id == bindparam("appointment_id"),
    )
    .order_by(_mapping.c.id)
)
SELECT_UNMAPPED_RECORDED = (
    select(_record.c.booking_resource_id)
    .where(
        _record.c.connection_id == bindparam("connection_id"),
        _record.c.appointment_id == bindparam("appointment_id"),
        _record.c.code == UNMAPPED_CODE,
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
            rows = await session.execute(
                SELECT_EMPLOYEES,
                {"connection_id": connection_id, "booking_resource_ids": sorted(ids)},
            )
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
    keys = {"connection_id": connection_id, "appointment_id": appointment_id}
    snapshot = (await session.execute(SELECT_SNAPSHOT, keys)).first()
    if snapshot is None:
        return None
    payload = dict(snapshot.payload)
    listed = listed_employees(payload.get("bookingResourceList"))
    employees: dict[str, str] = {}
    if listed:
        rows = await session.execute(
            SELECT_EMPLOYEES, {"connection_id": connection_id, "booking_resource_ids": listed}
        )
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
        for row in await session.execute(SELECT_MAPPINGS, keys)
    ]
    recorded: frozenset[str] = frozenset()
    if any(resource not in employees for resource in listed):
        records = await session.scalars(SELECT_UNMAPPED_RECORDED, keys)
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
