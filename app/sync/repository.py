"""All SQL of the sync jobs: load what plan() needs, and persist each action's outcome (mapping
row, sync record, employee status). Every function runs in the caller's session and transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.graph.schemas import Event
from app.models import Appointment, Connection, Employee, EventMapping, SyncRecord
from app.models.base import utcnow
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
