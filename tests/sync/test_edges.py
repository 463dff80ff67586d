"""Appointments at the calendar's edges and unexpected errors end in the sync history for good:
never an OverflowError retried without end, never a malformed date sent to Graph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.history.schemas import SyncRecordOut
from app.models import Appointment, SyncRecord
from app.queue.errors import PermanentError
from app.queue.retry import RetryStrategy
from app.sync import service
from app.sync.service import sync_appointment_impl
from app.sync.settings import TranslationSettings
from app.sync.translate import InvalidAppointment, appointment_end, translate
from tests.sync.samples import MAX, ORG, appointment
from tests.world import GraphWorld, MakeWorld

MAILBOX = "max@contoso.example"
APPOINTMENT = "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"

# Times no appointment can have: at or beyond the calendar's edges, or pushed past them by
# their offset or zone.
EDGE_TIMES = [
    {"start": "0001-01-01T00:00:00Z"},
    {"start": "0001-01-01T00:30:00+01:00"},
    {"start": "0001-01-01T00:00:00", "timeZone": "Europe/Berlin"},
    {"start": "1899-12-31T23:59:59Z"},
    {"end": "9999-12-31T23:59:59Z"},
    {"end": "9999-12-31T23:00:00-05:00"},
    {"end": "9999-12-31T23:00:00", "timeZone": "America/New_York"},
    {"end": "3000-01-01T00:00:00Z"},
]


@pytest.mark.parametrize("changes", EDGE_TIMES)
def test_times_at_the_calendars_edges_are_invalid(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidAppointment, match="between 1900-01-01 and 2999-12-31"):
        translate(appointment(**changes), TranslationSettings())


def test_times_just_inside_the_range_translate() -> None:
    body = translate(
        appointment(start="1900-01-01T00:00:00Z", end="2999-12-31T23:59:59Z", timeZone="UTC"),
        TranslationSettings(),
    )
    assert body.start.date_time == "1900-01-01T00:00:00"
    assert body.end.date_time == "2999-12-31T23:59:59"


def test_an_end_beyond_the_calendar_has_no_end() -> None:
    assert appointment_end(appointment(end="9999-12-31T23:00:00-05:00")) is None


class World(GraphWorld):
    locale = "de"

    async def store(self, payload: dict[str, Any]) -> None:
        async with self.database.session_scope() as session:
            session.add(
                Appointment(
                    connection_id=self.connection_id,
                    appointment_id=APPOINTMENT,
                    event_at=datetime.now(UTC),
                    event_type="appointment.created",
                    payload=payload,
                    canceled=False,
                )
            )

    async def sync(self) -> None:
        await sync_appointment_impl(
            database=self.database,
            settings=self.settings,
            secret_box=self.secret_box,
            graph=self.graph,
            connection_id=self.connection_id,
            appointment_id=APPOINTMENT,
            job_id=None,
        )

    async def records(self) -> list[SyncRecord]:
        async with self.database.session() as session:
            return list(await session.scalars(select(SyncRecord).order_by(SyncRecord.id)))


@pytest.fixture(params=["de", "en"])
async def world(make_world: MakeWorld, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with make_world(World, mailboxes=[MAILBOX]) as built:
        await built.add_connection(ORG, locale=request.param, employees={MAX: MAILBOX})
        built.locale = request.param
        yield built


@pytest.mark.parametrize(
    "changes",
    [
        {"end": "9999-12-31T23:00:00-05:00"},  # an OverflowError, retried for ever before
        {"start": "0001-01-01T00:00:00Z"},  # sent to Graph as a malformed date before
        {"start": "2025-06-02T12:00:00+02:00"},  # ends before it starts
    ],
)
async def test_an_edge_time_fails_the_job_for_good_with_a_readable_record(
    world: World, changes: dict[str, Any]
) -> None:
    await world.store(appointment(**changes))
    with pytest.raises(PermanentError) as raised:
        await world.sync()

    decision = RetryStrategy().decide(
        raised.value, attempt=1, max_attempts=5, now=datetime.now(UTC)
    )
    assert decision.outcome == "failed"
    [record] = await world.records()
    assert (record.code, record.status, record.appointment_id) == (
        "invalid_appointment",
        "error",
        APPOINTMENT,
    )
    opening = {
        "de": "Der Termin kann nicht übertragen werden",
        "en": "The appointment cannot be synchronised",
    }
    assert record.message.startswith(opening[world.locale])
    assert world.control.events(MAILBOX) == []


# Each reason in the connection's language throughout, and its code kept to tell it again.
INVALID_REASONS = [
    (
        {"start": "2025-06-02T12:00:00+02:00"},
        {"reason_code": "appointment_ends_before_start"},
        {
            "de": "Der Termin kann nicht übertragen werden: er endet, bevor er beginnt",
            "en": "The appointment cannot be synchronised: the appointment ends before it starts",
        },
    ),
    (
        {"end": "soon"},
        {"reason_code": "time_not_iso", "field_code": "time_end"},
        {
            "de": "Der Termin kann nicht übertragen werden: die Endzeit ist keine Zeitangabe "
            "nach ISO 8601",
            "en": "The appointment cannot be synchronised: the appointment's end is not an ISO "
            "8601 time",
        },
    ),
]


@pytest.mark.parametrize(("changes", "details", "texts"), INVALID_REASONS)
async def test_an_invalid_appointment_is_told_in_one_language(
    world: World, changes: dict[str, Any], details: dict[str, str], texts: dict[str, str]
) -> None:
    await world.store(appointment(**changes))
    with pytest.raises(PermanentError):
        await world.sync()
    [record] = await world.records()
    assert record.message == texts[world.locale]
    assert record.details == details
    other = "en" if world.locale == "de" else "de"
    told = SyncRecordOut.build(record, organization_id=ORG, locale=other)
    assert told.message == texts[other]


async def test_an_unexpected_error_is_recorded_and_fails_the_job_for_good(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug calbridge did not foresee")

    # Forced, as the point is an exception nobody foresaw.
    monkeypatch.setattr(service, "plan", broken)
    await world.store(appointment())
    with pytest.raises(PermanentError) as raised:
        await world.sync()

    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    decision = RetryStrategy().decide(
        raised.value, attempt=1, max_attempts=5, now=datetime.now(UTC)
    )
    assert decision.outcome == "failed"
    [record] = await world.records()
    assert (record.code, record.status, record.appointment_id) == (
        "internal_error",
        "error",
        APPOINTMENT,
    )
    expected = {
        "de": "Der Termin konnte wegen eines unerwarteten Fehlers in calbridge nicht übertragen "
        "werden; es folgt kein neuer Versuch. Fehler: ZeroDivisionError: a bug calbridge did "
        "not foresee",
        "en": "The appointment could not be synchronised because of an unexpected error in "
        "calbridge; it is not retried. Error: ZeroDivisionError: a bug calbridge did not foresee",
    }
    assert record.message == expected[world.locale]
    assert str(raised.value) == record.message
    assert record.details == {"error": "ZeroDivisionError: a bug calbridge did not foresee"}
