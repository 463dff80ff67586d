"""All SQL that records a sync run's outcome: the mapping rows of Outlook events (intent, created,
updated, deleted), sync history records and the employee's status. Every function runs in the
caller's session and transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.graph.schemas import Event
from app.models import Employee, EventMapping, SyncRecord
from app.models.base import utcnow

_employee = cast(Table, Employee.__table__)
_mapping = cast(Table, EventMapping.__table__)
_record = cast(Table, SyncRecord.__table__)


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


_OF_EMPLOYEE = (
    _mapping.c.connection_id == bindparam("w_connection_id"),
    _mapping.c.appointment_id == bindparam("w_appointment_id"),
    _mapping.c.booking_resource_id == bindparam("w_booking_resource_id"),
)


def _of_employee(target: Target) -> ColumnElement[bool]:
    return and_(
        EventMapping.connection_id == target.connection_id,
        EventMapping.appointment_id == target.appointment_id,
        EventMapping.booking_resource_id == target.resource,
    )


def _employee_keys(target: Target) -> dict[str, Any]:
    return {
        "w_connection_id": target.connection_id,
        "w_appointment_id": target.appointment_id,
        "w_booking_resource_id": target.resource,
    }


def _intent_statement(dialect: Any) -> Any:
    return dialect.insert(_mapping).on_conflict_do_nothing(
        index_elements=["connection_id", "appointment_id", "booking_resource_id", "generation"]
    )


_INSERT_INTENT = {"sqlite": _intent_statement(sqlite), "postgresql": _intent_statement(postgresql)}
_SAVE_CREATED = (
    update(_mapping)
    .where(*_OF_EMPLOYEE, _mapping.c.generation == bindparam("w_generation"))
    .values(
        mailbox=bindparam("v_mailbox"),
        graph_event_id=bindparam("v_graph_event_id"),
        ical_uid=bindparam("v_ical_uid"),
        change_key=bindparam("v_change_key"),
        field_hashes=bindparam("v_field_hashes", type_=_mapping.c.field_hashes.type),
        deleted=False,
        updated_at=bindparam("v_updated_at", type_=_mapping.c.updated_at.type),
    )
    .returning(_mapping.c.id)
)


async def ensure_intent(session: AsyncSession, target: Target, *, generation: int) -> None:
    """The row of a create about to be sent (no event id yet); a retried create keeps its row."""
    statement = _INSERT_INTENT[session.get_bind().dialect.name]
    await session.execute(
        statement,
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
        **_employee_keys(target),
        "w_generation": generation,
        "v_mailbox": target.mailbox or "",
        "v_graph_event_id": event.id,
        "v_ical_uid": event.ical_uid,
        "v_change_key": event.change_key,
        "v_field_hashes": dict(field_hashes),
        "v_updated_at": utcnow(),
    }
    if (await session.execute(_SAVE_CREATED, values)).first() is None:  # no intent row yet
        await ensure_intent(session, target, generation=generation)
        await session.execute(_SAVE_CREATED, values)


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


_INSERT_RECORD = insert(_record)
_SET_SUCCESS = (
    update(_employee)
    .where(
        _employee.c.connection_id == bindparam("w_connection_id"),
        _employee.c.booking_resource_id == bindparam("w_booking_resource_id"),
    )
    .values(
        last_success_at=bindparam("v_now", type_=_employee.c.updated_at.type),
        last_error_at=None,
        last_error_code=None,
        last_error_message=None,
        updated_at=bindparam("v_now", type_=_employee.c.updated_at.type),
    )
)
_SET_ERROR = (
    update(_employee)
    .where(
        _employee.c.connection_id == bindparam("w_connection_id"),
        _employee.c.booking_resource_id == bindparam("w_booking_resource_id"),
    )
    .values(
        last_error_at=bindparam("v_now", type_=_employee.c.updated_at.type),
        last_error_code=bindparam("v_code"),
        last_error_message=bindparam("v_message"),
        updated_at=bindparam("v_now", type_=_employee.c.updated_at.type),
    )
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
        _INSERT_RECORD,
        {
            "connection_id": target.connection_id,
            "appointment_id": target.appointment_id,
            "booking_resource_id": target.booking_resource_id,
            "mailbox": target.mailbox,
            "job_id": job_id,
            "action": action,
            "status": status,
            "code": code,
            "message": message,
            "details": details,
            "duration_ms": duration_ms,
            "graph_request_id": graph_request_id,
            "created_at": utcnow(),
        },
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
    keys = {"w_connection_id": connection_id, "w_booking_resource_id": booking_resource_id}
    if error_code is None:
        await session.execute(_SET_SUCCESS, {**keys, "v_now": now})
    else:
        values = {"v_now": now, "v_code": error_code, "v_message": error_message}
        await session.execute(_SET_ERROR, {**keys, **values})


async def add_appointment_error(
    session: AsyncSession,
    *,
    connection_id: int,
    appointment_id: str,
    job_id: int | None,
    action: str,
    code: str,
    message: str,
    details: dict[str, Any],
) -> None:
    """Add the history line of an error about the whole appointment (no employee, no mailbox)."""
    await add_record(
        session,
        Target(connection_id, appointment_id, None, None),
        job_id=job_id,
        action=action,
        status="error",
        code=code,
        message=message,
        details=details,
        duration_ms=None,
        graph_request_id=None,
    )
