"""The sync.appointment executor against the sandbox over HTTPS, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.graph.errors import GraphError, Throttled
from app.graph.odata import TAG_PROPERTY_ID
from app.models import Appointment, Connection, Employee, EventMapping, SyncRecord
from app.queue.errors import PermanentError, RetryAfter
from app.sandbox import ThrottleLimits
from app.sync.keys import appointment_tag, transaction_id
from app.sync.service import sync_appointment_impl
from tests.sync.samples import MAX, ORG, appointment
from tests.world import GraphWorld, MakeWorld

MAX_MAILBOX = "max@contoso.example"
ERIKA_MAILBOX = "erika@contoso.example"
ERIKA = "brErika0000000000000000000000000"
TYPO = "brTypo00000000000000000000000000"
APPOINTMENT = "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"

GERMAN_INVALID = (
    "Der Benutzer {m} ist ungültig – entweder existiert er nicht in der Organisation oder die "
    "E-Mail-Adresse wurde falsch eingegeben."
)
ENGLISH_INVALID = (
    "User {m} is invalid: it does not exist in the organization or the address is mistyped."
)


@dataclass
class World(GraphWorld):
    """The shared world without the app: a connection with Max mapped."""

    async def sync(self) -> None:
        await sync_appointment_impl(
            database=self.database,
            settings=self.settings,
            secret_box=self.secret_box,
            graph=self.graph,
            connection_id=self.connection_id,
            appointment_id=APPOINTMENT,
        )

    async def store(self, payload: dict[str, Any]) -> None:
        async with self.database.session_scope() as session:
            row = await session.scalar(
                select(Appointment).where(Appointment.appointment_id == APPOINTMENT)
            )
            if row is None:
                row = Appointment(
                    connection_id=self.connection_id,
                    appointment_id=APPOINTMENT,
                    event_at=datetime.now(UTC),
                    event_type="appointment.created",
                    payload=payload,
                )
                session.add(row)
            row.payload = payload
            row.canceled = payload.get("canceled") is True

    async def rows(self, model: Any) -> list[Any]:
        async with self.database.session_scope() as session:
            return list(await session.scalars(select(model).order_by(model.id)))

    def events(self, mailbox: str) -> list[dict[str, Any]]:
        return self.sandbox.control.events(mailbox)


@asynccontextmanager
async def _world(make_world: MakeWorld, locale: str) -> AsyncIterator[World]:
    limits = ThrottleLimits(concurrency=4, requests_per_window=10_000)
    async with make_world(
        World, seed=5, limits=limits, mailboxes=[MAX_MAILBOX, ERIKA_MAILBOX]
    ) as world:
        await world.add_connection(ORG, locale=locale, employees={MAX: MAX_MAILBOX})
        yield world


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with _world(make_world, "de") as built:
        yield built


@pytest.fixture
async def world_en(make_world: MakeWorld) -> AsyncIterator[World]:
    async with _world(make_world, "en") as built:
        yield built


def _with_employee(payload: dict[str, Any], resource: str, name: str) -> dict[str, Any]:
    extra = {"class": "BOOKING_RESOURCE", "id": resource, "type": "EMPLOYEE", "firstName": name}
    payload["bookingResourceList"] = [*payload["bookingResourceList"], extra]
    return payload


def _tag(event: dict[str, Any]) -> str | None:
    for prop in event.get("singleValueExtendedProperties") or []:
        if prop["id"].casefold() == TAG_PROPERTY_ID.casefold():
            return str(prop["value"])
    return None


async def test_create_then_unchanged_then_move_then_cancel(world: World) -> None:
    await world.store(appointment())
    await world.sync()

    [event] = world.events(MAX_MAILBOX)
    assert event["transactionId"] == transaction_id(ORG, APPOINTMENT, MAX, 1)
    assert _tag(event) == appointment_tag(ORG, APPOINTMENT, MAX)
    [row] = await world.rows(EventMapping)
    assert row.graph_event_id == event["id"] and row.generation == 1 and not row.deleted
    assert row.field_hashes and row.change_key == event["changeKey"]
    [record] = await world.rows(SyncRecord)
    assert (record.action, record.status, record.code) == ("create", "success", "created")
    assert record.graph_request_id and record.duration_ms is not None
    [employee] = await world.rows(Employee)
    assert employee.last_success_at is not None and employee.last_error_code is None

    # The same snapshot again: no Graph write, the event untouched.
    await world.sync()
    [same] = world.events(MAX_MAILBOX)
    assert same["changeKey"] == event["changeKey"]
    assert (await world.rows(SyncRecord))[-1].code == "unchanged"

    await world.store(
        appointment(start="2025-06-02T14:00:00+02:00", end="2025-06-02T15:00:00+02:00")
    )
    await world.sync()
    [moved] = world.events(MAX_MAILBOX)
    assert moved["id"] == event["id"]
    assert moved["start"]["dateTime"].startswith("2025-06-02T12:00:00")
    assert moved["end"]["dateTime"].startswith("2025-06-02T13:00:00")
    assert (await world.rows(SyncRecord))[-1].code == "updated"

    await world.store(appointment("canceled"))
    await world.sync()
    assert world.events(MAX_MAILBOX) == []
    [tombstone] = await world.rows(EventMapping)
    assert tombstone.deleted and tombstone.graph_event_id == event["id"]
    assert (await world.rows(SyncRecord))[-1].code == "deleted"


async def test_a_run_reads_the_connection_as_it_is_now(world: World) -> None:
    """Runs of one connection share what they make of its row only while the row is unchanged:
    new event settings (or a new locale) apply to the very next run."""

    async def change(**values: Any) -> None:
        async with world.database.session_scope() as session:
            connection = await session.get(Connection, world.connection_id)
            assert connection is not None
            for name, value in values.items():
                setattr(connection, name, value)

    await world.store(appointment())
    await world.sync()
    [event] = world.events(MAX_MAILBOX)
    assert event["categories"] == ["bookingtime"]

    await change(event_settings={"category": "Praxis"})
    await world.store(
        appointment(start="2025-06-02T14:00:00+02:00", end="2025-06-02T15:00:00+02:00")
    )
    await world.sync()
    [moved] = world.events(MAX_MAILBOX)
    assert moved["categories"] == ["Praxis"]

    await change(locale="en")
    await world.store(appointment("canceled"))
    await world.sync()
    [record] = [r for r in await world.rows(SyncRecord) if r.code == "deleted"]
    assert record.message == f"Appointment removed from the calendar of {MAX_MAILBOX}."


async def test_update_of_an_event_deleted_in_outlook_recreates_it(world: World) -> None:
    await world.store(appointment())
    await world.sync()
    [event] = world.events(MAX_MAILBOX)
    world.sandbox.control.outlook_delete(MAX_MAILBOX, event["id"])
    await world.store(appointment(notes="Neue Notiz"))
    await world.sync()
    [again] = world.events(MAX_MAILBOX)
    assert again["id"] != event["id"]
    assert again["transactionId"] == transaction_id(ORG, APPOINTMENT, MAX, 2)
    rows = await world.rows(EventMapping)
    assert [(r.generation, r.deleted) for r in rows] == [(1, True), (2, False)]
    assert rows[1].graph_event_id == again["id"]


async def test_two_employees_two_mailboxes(world: World) -> None:
    await world.employ(ERIKA, ERIKA_MAILBOX)
    await world.store(_with_employee(appointment(), ERIKA, "Erika"))
    await world.sync()
    assert len(world.events(MAX_MAILBOX)) == 1
    assert len(world.events(ERIKA_MAILBOX)) == 1
    assert len([r for r in await world.rows(SyncRecord) if r.code == "created"]) == 2


async def _mistyped(world: World) -> None:
    await world.employ(TYPO, "mxa@contoso.example")
    await world.store(_with_employee(appointment(), TYPO, "Typo"))
    with pytest.raises(PermanentError):
        await world.sync()
    assert len(world.events(MAX_MAILBOX)) == 1


async def test_mistyped_mailbox_is_recorded_in_german(world: World) -> None:
    await _mistyped(world)
    [error] = [r for r in await world.rows(SyncRecord) if r.status == "error"]
    assert error.code == "mailbox_invalid"
    assert error.message == GERMAN_INVALID.format(m="mxa@contoso.example")
    employees = {e.booking_resource_id: e for e in await world.rows(Employee)}
    assert employees[TYPO].last_error_code == "mailbox_invalid"
    assert employees[TYPO].last_error_message == error.message
    assert employees[MAX].last_success_at is not None and employees[MAX].last_error_code is None


async def test_mistyped_mailbox_is_recorded_in_english(world_en: World) -> None:
    await _mistyped(world_en)
    [error] = [r for r in await world_en.rows(SyncRecord) if r.status == "error"]
    assert error.message == ENGLISH_INVALID.format(m="mxa@contoso.example")


async def test_unmapped_employee_is_recorded_once(world: World) -> None:
    await world.store(_with_employee(appointment(), ERIKA, "Erika"))
    await world.sync()
    await world.sync()
    skips = [r for r in await world.rows(SyncRecord) if r.code == "unmapped_employee"]
    assert len(skips) == 1 and skips[0].booking_resource_id == ERIKA
    assert len(world.events(MAX_MAILBOX)) == 1


async def test_dropped_create_is_retried_after_a_lookup(world: World) -> None:
    await world.store(appointment())
    world.sandbox.control.faults.add("drop", count=1, path=r"/events$", mailbox=MAX_MAILBOX)
    with pytest.raises(Exception) as raised:
        await world.sync()
    assert not isinstance(raised.value, PermanentError)
    [intent] = await world.rows(EventMapping)
    assert intent.graph_event_id is None and intent.generation == 1
    assert (await world.rows(SyncRecord))[-1].status == "retrying"

    await world.sync()
    [event] = world.events(MAX_MAILBOX)
    [row] = await world.rows(EventMapping)
    assert row.graph_event_id == event["id"] and row.generation == 1


async def test_create_of_unknown_outcome_adopts_the_tagged_event(world: World) -> None:
    """The POST reached Graph but the answer was lost: the rerun finds the event by its tag."""
    await world.store(appointment())
    async with world.database.session_scope() as session:
        [connection] = await session.scalars(select(Connection))
        session.add(
            EventMapping(
                connection_id=world.connection_id,
                appointment_id=APPOINTMENT,
                booking_resource_id=MAX,
                mailbox=MAX_MAILBOX,
                generation=1,
                field_hashes={},
            )
        )
    client = world.graph.client_for(connection, world.secret_box)
    lost = await client.create_event(
        MAX_MAILBOX,
        {"subject": "lost answer"},
        transaction_id=transaction_id(ORG, APPOINTMENT, MAX, 1),
        tag=appointment_tag(ORG, APPOINTMENT, MAX),
    )
    await world.sync()
    [event] = world.events(MAX_MAILBOX)
    assert event["id"] == lost.value.id and event["subject"] != "lost answer"
    [row] = await world.rows(EventMapping)
    assert row.graph_event_id == lost.value.id and row.field_hashes


async def test_throttled_mailbox_retries_after_the_others(world: World) -> None:
    await world.employ(ERIKA, ERIKA_MAILBOX)
    await world.store(_with_employee(appointment(), ERIKA, "Erika"))
    world.sandbox.control.faults.add("429", count=1, mailbox=ERIKA_MAILBOX, retry_after="7")
    with pytest.raises(Throttled) as raised:
        await world.sync()
    assert raised.value.throttles_mailbox and raised.value.retry_after == 7
    assert len(world.events(MAX_MAILBOX)) == 1
    assert world.events(ERIKA_MAILBOX) == []
    records = {r.mailbox: r for r in await world.rows(SyncRecord)}
    assert records[ERIKA_MAILBOX].code == "throttled"
    assert records[ERIKA_MAILBOX].status == "retrying"
    assert records[MAX_MAILBOX].code == "created"


async def test_missing_snapshot_ends_quietly(world: World) -> None:
    await world.sync()
    assert await world.rows(SyncRecord) == []


async def _break(world: World, how: str) -> None:
    """Make Microsoft refuse the connection in one of the ways an admin meets."""
    control = world.sandbox.control
    async with world.database.session_scope() as session:
        connection = await session.get(Connection, world.connection_id)
        assert connection is not None
        if how == "secret_invalid":
            connection.client_secret_encrypted = world.secret_box.encrypt("not-the-secret")
        elif how == "secret_expired":
            past = datetime.now(UTC) - timedelta(days=1)
            expired = control.add_secret(connection.client_id, expires_at=past)
            connection.client_secret_encrypted = world.secret_box.encrypt(expired)
        elif how == "tenant_not_found":
            connection.tenant = str(uuid.uuid4())
        elif how == "app_not_in_tenant":
            connection.client_id = str(uuid.uuid4())
        elif how == "consent_missing":
            control.set_consent(connection.client_id, False)
        elif how == "access_policy_blocked":
            control.block(connection.client_id, MAX_MAILBOX)
        else:
            raise AssertionError(how)


# The code, and a phrase of its German message that tells the admin what to do.
PERMANENT_FAILURES = {
    "secret_invalid": "den Wert (nicht die ID) eines gültigen Schlüssels",
    "secret_expired": "einen neuen Schlüssel erstellen",
    "tenant_not_found": "Mandanten-ID (Verzeichnis-ID) in der Verbindung prüfen",
    "app_not_in_tenant": "Anwendungs-ID (Client-ID) prüfen",
    "consent_missing": "Calendars.ReadWrite",
    "access_policy_blocked": "Anwendungszugriffsrichtlinie",
}


@pytest.mark.parametrize("code", sorted(PERMANENT_FAILURES))
async def test_permanent_failures_fail_the_job_and_tell_the_admin(world: World, code: str) -> None:
    await world.store(appointment())
    await _break(world, code)
    with pytest.raises(PermanentError):
        await world.sync()
    assert world.events(MAX_MAILBOX) == []
    [record] = await world.rows(SyncRecord)
    assert (record.code, record.status, record.mailbox) == (code, "error", MAX_MAILBOX)
    assert PERMANENT_FAILURES[code] in record.message
    [employee] = await world.rows(Employee)
    assert employee.last_error_code == code
    assert employee.last_error_message == record.message
    assert employee.last_success_at is None


async def test_graph_unavailable_retries_and_success_clears_the_error(world: World) -> None:
    await world.store(appointment())
    async with world.database.session_scope() as session:
        [employee] = list(await session.scalars(select(Employee)))
        employee.last_error_code, employee.last_error_message = "mailbox_invalid", "old"
    world.sandbox.control.faults.add("503", count=20, mailbox=MAX_MAILBOX)
    # Retryable: the queue backs off (a GraphError) or waits for Graph's Retry-After.
    with pytest.raises((GraphError, RetryAfter)):
        await world.sync()
    [record] = await world.rows(SyncRecord)
    assert (record.code, record.status) == ("graph_unavailable", "retrying")
    assert record.message == (
        "Microsoft Graph ist vorübergehend nicht erreichbar; neuer Versuch folgt."
    )

    world.sandbox.control.faults.clear()
    await world.sync()
    assert len(world.events(MAX_MAILBOX)) == 1
    [employee] = await world.rows(Employee)
    assert employee.last_success_at is not None
    assert (employee.last_error_code, employee.last_error_message) == (None, None)
    assert [r.code for r in await world.rows(SyncRecord)] == ["graph_unavailable", "created"]
