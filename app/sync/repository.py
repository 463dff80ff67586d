"""All SQL of the `sync.appointment` job: load what plan() needs, and persist each action's
outcome (mapping row, sync record, employee status). Callers own the (short) transactions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Executable, Table, and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.graph.schemas import Event
from app.models import Appointment, Connection, Employee, EventMapping, SyncRecord
from app.models.base import utcnow
from app.sync.planner import MappingState, listed_employees
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
    snapshot = (
        await session.execute(
            select(Appointment.payload, Appointment.canceled, Appointment.updated_at).where(
                Appointment.connection_id == connection_id,
                Appointment.appointment_id == appointment_id,
            )
        )
    ).one_or_none()
    if snapshot is None:
        return None
    payload = dict(snapshot.payload)
    listed = listed_employees(payload.get("bookingResourceList"))
    employees: dict[str, str] = {}
    if listed:
        found = await session.execute(
            select(Employee.booking_resource_id, Employee.mailbox).where(
                Employee.connection_id == connection_id,
                Employee.booking_resource_id.in_(listed),
            )
        )
        employees = {row.booking_resource_id: row.mailbox for row in found}
    mapping = _MAPPING.c
    rows = await session.execute(
        select(
            mapping.booking_resource_id,
            mapping.mailbox,
            mapping.generation,
            mapping.graph_event_id,
            mapping.field_hashes,
            mapping.deleted,
            mapping.detached,
        )
        .where(mapping.connection_id == connection_id, mapping.appointment_id == appointment_id)
        .order_by(mapping.id)
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
    recorded: frozenset[str] = frozenset()
    if any(resource not in employees for resource in listed):
        found_records = await session.scalars(
            select(SyncRecord.booking_resource_id)
            .where(
                SyncRecord.connection_id == connection_id,
                SyncRecord.appointment_id == appointment_id,
                SyncRecord.code == UNMAPPED_CODE,
            )
            .distinct()
        )
        recorded = frozenset(r for r in found_records if r is not None)
    return SyncState(
        connection=connection,
        payload=payload,
        canceled=snapshot.canceled or payload.get("canceled") is True,
        employees=employees,
        mappings=mappings,
        unmapped_recorded=recorded,
        received_at=snapshot.updated_at,
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


_MAPPING = cast(Table, EventMapping.__table__)
_EMPLOYEE = cast(Table, Employee.__table__)
_RECORD = cast(Table, SyncRecord.__table__)


def _generation_key(target: Target, generation: int) -> ColumnElement[bool]:
    c = _MAPPING.c
    return and_(
        c.connection_id == target.connection_id,
        c.appointment_id == target.appointment_id,
        c.booking_resource_id == target.resource,
        c.generation == generation,
    )


def _insert_ignoring_conflict(session: AsyncSession, values: dict[str, Any]) -> Executable:
    """INSERT of a mapping row that does nothing when its generation's row already exists."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return (
        insert(_MAPPING)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["connection_id", "appointment_id", "booking_resource_id", "generation"]
        )
    )


async def ensure_intent(session: AsyncSession, target: Target, *, generation: int) -> None:
    """The row of a create about to be sent (no event id yet); a retried create keeps its row."""
    await session.execute(
        _insert_ignoring_conflict(
            session,
            {
                "connection_id": target.connection_id,
                "appointment_id": target.appointment_id,
                "booking_resource_id": target.resource,
                "mailbox": target.mailbox or "",
                "generation": generation,
                "field_hashes": {},
                "deleted": False,
                "detached": False,
            },
        )
    )


async def save_created(
    session: AsyncSession,
    target: Target,
    *,
    generation: int,
    event: Event,
    field_hashes: dict[str, str],
) -> None:
    """Store a created (or adopted) event on its generation's row (added if it is missing)."""
    values = {
        "mailbox": target.mailbox or "",
        "graph_event_id": event.id,
        "ical_uid": event.ical_uid,
        "change_key": event.change_key,
        "field_hashes": dict(field_hashes),
        "deleted": False,
        "updated_at": utcnow(),
    }
    updated = await session.execute(
        update(_MAPPING).where(_generation_key(target, generation)).values(**values)
    )
    if cast(CursorResult[Any], updated).rowcount == 0:  # no intent row (it is written first)
        await ensure_intent(session, target, generation=generation)
        await session.execute(
            update(_MAPPING).where(_generation_key(target, generation)).values(**values)
        )


def _live(target: Target, graph_event_id: str | None) -> ColumnElement[bool]:
    c = _MAPPING.c
    return and_(
        c.connection_id == target.connection_id,
        c.appointment_id == target.appointment_id,
        c.booking_resource_id == target.resource,
        c.deleted.is_(False),
        c.graph_event_id.is_(None)
        if graph_event_id is None
        else c.graph_event_id == graph_event_id,
    )


async def save_updated(
    session: AsyncSession, target: Target, *, event: Event, field_hashes: dict[str, str]
) -> None:
    """Store the new changeKey and hashes after a PATCH."""
    c = _MAPPING.c
    await session.execute(
        update(_MAPPING)
        .where(_live(target, event.id))
        .values(
            change_key=event.change_key,
            ical_uid=func.coalesce(event.ical_uid, c.ical_uid),
            field_hashes=dict(field_hashes),
            updated_at=utcnow(),
        )
    )


async def mark_deleted(
    session: AsyncSession, target: Target, *, graph_event_id: str | None
) -> None:
    """Turn the rows of a deleted (or vanished) event in the target's mailbox into tombstones."""
    mailbox = (target.mailbox or "").strip().casefold()
    c = _MAPPING.c
    rows = await session.execute(select(c.id, c.mailbox).where(_live(target, graph_event_id)))
    ids = [row.id for row in rows if row.mailbox.strip().casefold() == mailbox]
    if ids:
        await session.execute(
            update(_MAPPING).where(c.id.in_(ids)).values(deleted=True, updated_at=utcnow())
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
    await session.execute(
        insert(_RECORD).values(
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
    values: dict[str, Any] = (
        {
            "last_success_at": now,
            "last_error_at": None,
            "last_error_code": None,
            "last_error_message": None,
        }
        if error_code is None
        else {
            "last_error_at": now,
            "last_error_code": error_code,
            "last_error_message": error_message,
        }
    )
    c = _EMPLOYEE.c
    await session.execute(
        update(_EMPLOYEE)
        .where(c.connection_id == connection_id, c.booking_resource_id == booking_resource_id)
        .values(**values, updated_at=now)
    )
