"""All SQL of the `sync.appointment` job: load what plan() needs, and persist each action's
outcome (mapping row, sync record, employee status). Callers own the (short) transactions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.graph.schemas import Event
from app.models import Appointment, Connection, Employee, EventMapping, SyncRecord
from app.models.base import utcnow
from app.sync.planner import MappingState
from app.sync.translate import TranslationSettings

log = logging.getLogger(__name__)

UNMAPPED_CODE = "unmapped_employee"


def translation_settings(connection: Connection) -> TranslationSettings:
    """How the connection's events look: its event settings in its language.

    Settings are validated when the admin sets them; a stored document this version cannot read
    (written by a newer one, say) falls back to the defaults instead of stopping the sync.
    """
    stored = dict(connection.event_settings or {})
    locale = connection.locale if connection.locale in ("de", "en") else "de"
    try:
        return TranslationSettings.model_validate({**stored, "locale": locale})
    except ValidationError as exc:
        log.warning(
            "connection %s: stored event settings unreadable, using the defaults: %s",
            connection.organization_id,
            exc.errors(include_input=False),
        )
        return TranslationSettings.model_validate({"locale": locale})


@dataclass(frozen=True)
class SyncState:
    """Everything one run reads in its first short transaction."""

    connection: Connection
    payload: dict[str, Any]
    canceled: bool
    employees: dict[str, str]  # booking resource id → mailbox
    mappings: list[MappingState]
    unmapped_recorded: frozenset[str]  # employees whose `unmapped` skip is already in history


async def load_state(
    session: AsyncSession, connection_id: int, appointment_id: str
) -> SyncState | None:
    """The connection, snapshot, employee map and mapping rows; None without connection or
    snapshot."""
    connection = await session.get(Connection, connection_id)
    if connection is None:
        return None
    snapshot = await session.scalar(
        select(Appointment).where(
            Appointment.connection_id == connection_id,
            Appointment.appointment_id == appointment_id,
        )
    )
    if snapshot is None:
        return None
    employees = {
        row.booking_resource_id: row.mailbox
        for row in await session.scalars(
            select(Employee).where(Employee.connection_id == connection_id)
        )
    }
    rows = await session.scalars(
        select(EventMapping)
        .where(
            EventMapping.connection_id == connection_id,
            EventMapping.appointment_id == appointment_id,
        )
        .order_by(EventMapping.id)
    )
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
        for row in rows
    ]
    recorded = await session.scalars(
        select(SyncRecord.booking_resource_id)
        .where(
            SyncRecord.connection_id == connection_id,
            SyncRecord.appointment_id == appointment_id,
            SyncRecord.code == UNMAPPED_CODE,
        )
        .distinct()
    )
    return SyncState(
        connection=connection,
        payload=dict(snapshot.payload),
        canceled=snapshot.canceled or snapshot.payload.get("canceled") is True,
        employees=employees,
        mappings=mappings,
        unmapped_recorded=frozenset(r for r in recorded if r is not None),
    )


@dataclass(frozen=True)
class Target:
    """One appointment's event in one employee's mailbox: what every row written here is about."""

    connection_id: int
    appointment_id: str
    booking_resource_id: str | None  # None: about the whole appointment (history only)
    mailbox: str | None

    @property
    def resource(self) -> str:
        """The employee, which every mapping row has."""
        if self.booking_resource_id is None:
            raise ValueError("a mapping row belongs to one employee")
        return self.booking_resource_id


async def _generation_row(session: AsyncSession, target: Target, generation: int) -> EventMapping:
    """The mapping row of this generation, added (without an event id) when there is none."""
    row = await session.scalar(
        select(EventMapping).where(
            EventMapping.connection_id == target.connection_id,
            EventMapping.appointment_id == target.appointment_id,
            EventMapping.booking_resource_id == target.resource,
            EventMapping.generation == generation,
        )
    )
    if row is None:
        row = EventMapping(
            connection_id=target.connection_id,
            appointment_id=target.appointment_id,
            booking_resource_id=target.resource,
            mailbox=target.mailbox or "",
            generation=generation,
            field_hashes={},
            deleted=False,
        )
        session.add(row)
        await session.flush()
    return row


async def ensure_intent(session: AsyncSession, target: Target, *, generation: int) -> None:
    """The row of a create about to be sent (no event id yet); a retried create keeps its row."""
    await _generation_row(session, target, generation)


async def save_created(
    session: AsyncSession,
    target: Target,
    *,
    generation: int,
    event: Event,
    field_hashes: dict[str, str],
) -> None:
    """Store a created (or adopted) event on its generation's row."""
    row = await _generation_row(session, target, generation)
    row.mailbox = target.mailbox or ""
    row.graph_event_id = event.id
    row.ical_uid = event.ical_uid
    row.change_key = event.change_key
    row.field_hashes = dict(field_hashes)
    row.deleted = False
    row.updated_at = utcnow()
    await session.flush()


async def _live_rows(
    session: AsyncSession, target: Target, graph_event_id: str | None
) -> list[EventMapping]:
    query = select(EventMapping).where(
        EventMapping.connection_id == target.connection_id,
        EventMapping.appointment_id == target.appointment_id,
        EventMapping.booking_resource_id == target.resource,
        EventMapping.deleted.is_(False),
    )
    if graph_event_id is None:
        query = query.where(EventMapping.graph_event_id.is_(None))
    else:
        query = query.where(EventMapping.graph_event_id == graph_event_id)
    return list(await session.scalars(query))


async def save_updated(
    session: AsyncSession, target: Target, *, event: Event, field_hashes: dict[str, str]
) -> None:
    """Store the new changeKey and hashes after a PATCH."""
    for row in await _live_rows(session, target, event.id):
        row.change_key = event.change_key
        row.ical_uid = event.ical_uid or row.ical_uid
        row.field_hashes = dict(field_hashes)
        row.updated_at = utcnow()
    await session.flush()


async def mark_deleted(
    session: AsyncSession, target: Target, *, graph_event_id: str | None
) -> None:
    """Turn the rows of a deleted (or vanished) event into tombstones."""
    mailbox = (target.mailbox or "").strip().casefold()
    for row in await _live_rows(session, target, graph_event_id):
        if row.mailbox.strip().casefold() == mailbox:
            row.deleted = True
            row.updated_at = utcnow()
    await session.flush()


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
    session.add(
        SyncRecord(
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
        )
    )
    await session.flush()


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
    employee = await session.scalar(
        select(Employee).where(
            Employee.connection_id == connection_id,
            Employee.booking_resource_id == booking_resource_id,
        )
    )
    if employee is None:
        return
    if error_code is None:
        employee.last_success_at = now
        employee.last_error_at = None
        employee.last_error_code = None
        employee.last_error_message = None
    else:
        employee.last_error_at = now
        employee.last_error_code = error_code
        employee.last_error_message = error_message
    await session.flush()
