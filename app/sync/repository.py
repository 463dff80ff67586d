"""All SQL of the `sync.appointment` job: load what plan() needs, and persist each action's
outcome (mapping row, sync record, employee status). Each function runs its Core statements in a
unit of work (`Database.run_unit`, or a session through `run_in_session`) that the caller owns."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.db import Statements
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


def single_mailboxes(
    db: Statements, payloads: Mapping[tuple[int, str], Mapping[str, Any]]
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
            params = {"w_connection_id": connection_id, "w_resources": sorted(ids)}
            rows = db.execute(_SQL.employees, params)
            known.update(((connection_id, r.booking_resource_id), r.mailbox) for r in rows)
    single: dict[tuple[int, str], str] = {}
    for (connection_id, appointment_id), resources in listed.items():
        mapped = [known[(connection_id, r)] for r in resources if (connection_id, r) in known]
        if mapped and len({mailbox.casefold() for mailbox in mapped}) == 1:
            single[(connection_id, appointment_id)] = mapped[0]
    return single


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


def load_state(db: Statements, connection_id: int, appointment_id: str) -> SyncState | None:
    """The connection, snapshot, employee map and mapping rows; None without connection or
    snapshot. Only the employees the appointment lists are read (the planner looks up no others),
    and the `unmapped` history only when one of them is not mapped."""
    found = db.execute(_SQL.connection, {"w_connection_id": connection_id})
    if not found:
        return None
    connection, settings = _connection_view(found[0])
    key = {"w_connection_id": connection_id, "w_appointment_id": appointment_id}
    snapshots = db.execute(_SQL.snapshot, key)
    if not snapshots:
        return None
    snapshot = snapshots[0]
    payload = dict(snapshot.payload)
    listed = listed_employees(payload.get("bookingResourceList"))
    employees: dict[str, str] = {}
    if listed:
        rows = db.execute(_SQL.employees, {**key, "w_resources": listed})
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
        for row in db.execute(_SQL.mappings, key)
    ]
    recorded: frozenset[str] = frozenset()
    if any(resource not in employees for resource in listed):
        records = db.execute(_SQL.unmapped_recorded, key)
        recorded = frozenset(r.booking_resource_id for r in records if r.booking_resource_id)
    return SyncState(
        connection=connection,
        settings=settings,
        payload=payload,
        canceled=snapshot.canceled or payload.get("canceled") is True,
        employees=employees,
        mappings=mappings,
        unmapped_recorded=recorded,
        received_at=snapshot.updated_at,
    )


# Connection id → (its row as last read, a detached Connection made of it, its settings).
_VIEWS: dict[int, tuple[Any, Connection, TranslationSettings]] = {}
_MAX_VIEWS = 4096


def _connection_view(row: Any) -> tuple[Connection, TranslationSettings]:
    """A detached Connection (no session: a run reads its settings and credentials, never
    writes it) and its translation settings, made again only when the row has changed since
    they were last made: every job of the connection reads the same row."""
    known = _VIEWS.get(row.id)
    if known is not None and known[0] == row:
        return known[1], known[2]
    connection = Connection(**row._asdict())
    settings = translation_settings(connection)
    if len(_VIEWS) >= _MAX_VIEWS:
        _VIEWS.clear()
    _VIEWS[row.id] = (row, connection, settings)
    return connection, settings


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
_APPOINTMENT = cast(Table, Appointment.__table__)
_CONNECTION = cast(Table, Connection.__table__)


class _Statements:
    """Every statement of a sync run, built once: a job runs each of them, and building (and
    cache-keying) a statement costs more than executing it. Parameters: `w_*` in WHERE clauses,
    `v_*` in SET clauses (a bound parameter may not share a column's name there)."""

    def __init__(self) -> None:
        m, e = _MAPPING.c, _EMPLOYEE.c
        self.connection = select(_CONNECTION).where(
            _CONNECTION.c.id == bindparam("w_connection_id")
        )
        self.snapshot = select(
            _APPOINTMENT.c.payload, _APPOINTMENT.c.canceled, _APPOINTMENT.c.updated_at
        ).where(
            _APPOINTMENT.c.connection_id == bindparam("w_connection_id"),
            _APPOINTMENT.c.appointment_id == bindparam("w_appointment_id"),
        )
        self.employees = select(e.booking_resource_id, e.mailbox).where(
            e.connection_id == bindparam("w_connection_id"),
            e.booking_resource_id.in_(bindparam("w_resources", expanding=True)),
        )
        appointment = and_(
            m.connection_id == bindparam("w_connection_id"),
            m.appointment_id == bindparam("w_appointment_id"),
        )
        self.mappings = (
            select(
                m.booking_resource_id,
                m.mailbox,
                m.generation,
                m.graph_event_id,
                m.field_hashes,
                m.deleted,
                m.detached,
            )
            .where(appointment)
            .order_by(m.id)
        )
        r = _RECORD.c
        self.unmapped_recorded = (
            select(r.booking_resource_id)
            .where(
                r.connection_id == bindparam("w_connection_id"),
                r.appointment_id == bindparam("w_appointment_id"),
                r.code == UNMAPPED_CODE,
            )
            .distinct()
        )
        employee = and_(appointment, m.booking_resource_id == bindparam("w_resource"))
        conflict = ["connection_id", "appointment_id", "booking_resource_id", "generation"]
        intent = {
            name: bindparam(name, type_=_MAPPING.c[name].type)
            for name in (*conflict, "mailbox", "field_hashes", "created_at", "updated_at")
        }
        intent_values = {**intent, "deleted": False, "detached": False}
        self.intent = {
            "postgresql": postgresql.insert(_MAPPING)
            .values(intent_values)
            .on_conflict_do_nothing(index_elements=conflict),
            "sqlite": sqlite.insert(_MAPPING)
            .values(intent_values)
            .on_conflict_do_nothing(index_elements=conflict),
        }
        self.save_created = (
            update(_MAPPING)
            .where(employee, m.generation == bindparam("w_generation"))
            .values(
                mailbox=bindparam("v_mailbox"),
                graph_event_id=bindparam("v_graph_event_id"),
                ical_uid=bindparam("v_ical_uid"),
                change_key=bindparam("v_change_key"),
                field_hashes=bindparam("v_field_hashes"),
                deleted=False,
                updated_at=bindparam("v_now"),
            )
            .returning(m.id)  # none: the row is missing
        )
        live = and_(employee, m.deleted.is_(False))
        self.live_by_id = and_(live, m.graph_event_id == bindparam("w_graph_event_id"))
        self.live_without_id = and_(live, m.graph_event_id.is_(None))
        self.save_updated = (
            update(_MAPPING)
            .where(self.live_by_id)
            .values(
                change_key=bindparam("v_change_key"),
                ical_uid=func.coalesce(bindparam("v_ical_uid", type_=m.ical_uid.type), m.ical_uid),
                field_hashes=bindparam("v_field_hashes"),
                updated_at=bindparam("v_now"),
            )
        )
        self.live_rows = {
            True: select(m.id, m.mailbox).where(self.live_by_id),
            False: select(m.id, m.mailbox).where(self.live_without_id),
        }
        self.tombstone = (
            update(_MAPPING)
            .where(m.id.in_(bindparam("w_ids", expanding=True)))
            .values(deleted=True, updated_at=bindparam("v_now"))
        )
        self.record = insert(_RECORD).values(
            {
                column.key: bindparam(column.key, type_=column.type)
                for column in _RECORD.columns
                if column.key != "id"
            }
        )
        of_employee = and_(
            e.connection_id == bindparam("w_connection_id"),
            e.booking_resource_id == bindparam("w_resource"),
        )
        self.employee_success = (
            update(_EMPLOYEE)
            .where(of_employee)
            .values(
                last_success_at=bindparam("v_now"),
                last_error_at=None,
                last_error_code=None,
                last_error_message=None,
                updated_at=bindparam("v_now"),
            )
        )
        self.employee_error = (
            update(_EMPLOYEE)
            .where(of_employee)
            .values(
                last_error_at=bindparam("v_now"),
                last_error_code=bindparam("v_code"),
                last_error_message=bindparam("v_message"),
                updated_at=bindparam("v_now"),
            )
        )


_SQL = _Statements()


def _row_key(target: Target) -> dict[str, Any]:
    return {
        "w_connection_id": target.connection_id,
        "w_appointment_id": target.appointment_id,
        "w_resource": target.resource,
    }


def ensure_intent(db: Statements, target: Target, *, generation: int) -> None:
    """The row of a create about to be sent (no event id yet); a retried create keeps its row."""
    now = utcnow()
    db.execute(
        _SQL.intent["postgresql" if db.dialect.name == "postgresql" else "sqlite"],
        {
            "connection_id": target.connection_id,
            "appointment_id": target.appointment_id,
            "booking_resource_id": target.resource,
            "mailbox": target.mailbox or "",
            "generation": generation,
            "field_hashes": {},
            "created_at": now,
            "updated_at": now,
        },
    )


def save_created(
    db: Statements,
    target: Target,
    *,
    generation: int,
    event: Event,
    field_hashes: dict[str, str],
) -> None:
    """Store a created (or adopted) event on its generation's row (added if it is missing)."""
    params = {
        **_row_key(target),
        "w_generation": generation,
        "v_mailbox": target.mailbox or "",
        "v_graph_event_id": event.id,
        "v_ical_uid": event.ical_uid,
        "v_change_key": event.change_key,
        "v_field_hashes": dict(field_hashes),
        "v_now": utcnow(),
    }
    if not db.execute(_SQL.save_created, params):  # no intent row (it is written first)
        ensure_intent(db, target, generation=generation)
        db.execute(_SQL.save_created, params)


def save_updated(
    db: Statements, target: Target, *, event: Event, field_hashes: dict[str, str]
) -> None:
    """Store the new changeKey and hashes after a PATCH."""
    db.execute(
        _SQL.save_updated,
        {
            **_row_key(target),
            "w_graph_event_id": event.id,
            "v_change_key": event.change_key,
            "v_ical_uid": event.ical_uid,
            "v_field_hashes": dict(field_hashes),
            "v_now": utcnow(),
        },
    )


def mark_deleted(db: Statements, target: Target, *, graph_event_id: str | None) -> None:
    """Turn the rows of a deleted (or vanished) event in the target's mailbox into tombstones."""
    mailbox = (target.mailbox or "").strip().casefold()
    rows = db.execute(
        _SQL.live_rows[graph_event_id is not None],
        {**_row_key(target), "w_graph_event_id": graph_event_id},
    )
    ids = [row.id for row in rows if row.mailbox.strip().casefold() == mailbox]
    if ids:
        db.execute(_SQL.tombstone, {"w_ids": ids, "v_now": utcnow()})


def add_record(
    db: Statements,
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
    db.execute(
        _SQL.record,
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


def set_employee_status(
    db: Statements,
    *,
    connection_id: int,
    booking_resource_id: str,
    now: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Success (no error code): `last_success_at` set, error cleared; else the error set."""
    key = {"w_connection_id": connection_id, "w_resource": booking_resource_id, "v_now": now}
    if error_code is None:
        db.execute(_SQL.employee_success, key)
    else:
        db.execute(_SQL.employee_error, {**key, "v_code": error_code, "v_message": error_message})
