"""Recording deliveries: newest snapshot wins, duplicates and stale events are recorded as such,
and the job names the one mailbox of its appointment; a list recorded together (one
transaction, as the group commit does) ends exactly as the same list recorded one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from app.bookingtime.parsing import ParsedEvent
from app.bookingtime.service import Delivery, IntakeOutcome, build_intake, record_deliveries
from app.db import Database
from app.models import Appointment, Employee, InboxEvent, Job

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def delivery(
    connection_id: int,
    webhook_id: str,
    appointment_id: str,
    at: datetime,
    *,
    event_type: str = "appointment.updated",
    name: str = "",
) -> Delivery:
    appointment: dict[str, Any] | None = {"id": appointment_id, "name": name or webhook_id}
    if not event_type.startswith("appointment."):
        appointment = None
    return Delivery(
        connection_id=connection_id,
        webhook_id=webhook_id,
        event=ParsedEvent(
            event_type=event_type,
            event_at=at,
            appointment_id=appointment_id,
            appointment=appointment,
            canceled=False,
        ),
    )


Record = Callable[[Database, Sequence[Delivery]], Awaitable[list[IntakeOutcome]]]


async def _one_by_one(database: Database, deliveries: Sequence[Delivery]) -> list[IntakeOutcome]:
    outcomes = []
    for d in deliveries:
        async with database.session_scope() as session:
            outcomes.extend(await record_deliveries(session, [d]))
    return outcomes


async def _together(database: Database, deliveries: Sequence[Delivery]) -> list[IntakeOutcome]:
    async with database.session_scope() as session:
        return await record_deliveries(session, deliveries)


@pytest.fixture(params=["one_by_one", "together"])
def record(request: pytest.FixtureRequest) -> Record:
    """Record deliveries each in its own transaction, or all in one."""
    return _one_by_one if request.param == "one_by_one" else _together


async def rows(database: Database) -> tuple[list[InboxEvent], list[Appointment], list[Job]]:
    async with database.session() as session:
        inbox = list(await session.scalars(select(InboxEvent).order_by(InboxEvent.id)))
        snapshots = list(await session.scalars(select(Appointment)))
        jobs = list(await session.scalars(select(Job)))
    return inbox, snapshots, jobs


async def test_repeated_webhook_id_in_one_batch_is_a_duplicate(
    database: Database, connection_id: int, record: Record
) -> None:
    outcomes = await record(
        database,
        [delivery(connection_id, "m1", "edA", T0), delivery(connection_id, "m1", "edA", T0)],
    )
    assert [o.status for o in outcomes] == ["accepted", "duplicate"]
    inbox, snapshots, jobs = await rows(database)
    assert len(inbox) == 1 and len(snapshots) == 1 and len(jobs) == 1


async def test_two_events_of_one_appointment_newest_wins_one_job(
    database: Database, connection_id: int, record: Record
) -> None:
    outcomes = await record(
        database,
        [
            delivery(connection_id, "m2", "edA", T0 + timedelta(seconds=5), name="newer"),
            delivery(connection_id, "m1", "edA", T0, name="older"),
        ],
    )
    # One by one: the newer is stored, the older is stale against it.
    assert [o.status for o in outcomes] == ["accepted", "stale"]
    assert outcomes[0].job_id is not None and not outcomes[0].coalesced
    inbox, [snapshot], [job] = await rows(database)
    assert snapshot.payload["name"] == "newer"
    assert job.args == {"connection_id": connection_id, "appointment_id": "edA"}
    assert [i.outcome for i in inbox] == ["accepted", "stale"]


async def test_batch_against_a_stored_snapshot(
    database: Database, connection_id: int, record: Record
) -> None:
    await record(database, [delivery(connection_id, "m0", "edA", T0, name="stored")])
    outcomes = await record(
        database,
        [
            delivery(connection_id, "m1", "edA", T0 - timedelta(seconds=1), name="older"),
            delivery(connection_id, "m2", "edA", T0, name="same-second"),
            delivery(connection_id, "m3", "edA", T0 + timedelta(seconds=1), name="newest"),
        ],
    )
    assert [o.status for o in outcomes] == ["stale", "accepted", "accepted"]
    # The pending job from the first batch absorbs both: nothing new is enqueued.
    assert all(o.coalesced for o in outcomes if o.status == "accepted")
    inbox, [snapshot], jobs = await rows(database)
    assert snapshot.payload["name"] == "newest"
    assert len(jobs) == 1
    assert [i.outcome for i in inbox] == ["accepted", "stale", "accepted", "accepted"]


async def test_batch_entirely_older_than_stored_is_stale(
    database: Database, connection_id: int, record: Record
) -> None:
    await record(database, [delivery(connection_id, "m0", "edA", T0, name="stored")])
    outcomes = await record(
        database,
        [
            delivery(connection_id, "m1", "edA", T0 - timedelta(seconds=2)),
            delivery(connection_id, "m2", "edA", T0 - timedelta(seconds=1)),
            delivery(connection_id, "m3", "edB", T0, event_type="customer.created"),
        ],
    )
    assert [o.status for o in outcomes] == ["stale", "stale", "ignored"]
    _, snapshots, _ = await rows(database)
    assert [s.payload["name"] for s in snapshots] == ["stored"]


async def test_a_bad_delivery_fails_alone(database: Database, connection_id: int) -> None:
    """Handed to the intake together, the three share a transaction; the one for a connection
    that does not exist fails that transaction, and is then the only one that fails."""
    intake = build_intake(database)
    results = await asyncio.gather(
        intake.record(delivery(connection_id, "m1", "edA", T0)),
        intake.record(delivery(connection_id + 999, "m2", "edB", T0)),  # no such connection
        intake.record(delivery(connection_id, "m3", "edC", T0)),
        return_exceptions=True,
    )
    assert isinstance(results[1], IntegrityError)
    assert [r.status for r in (results[0], results[2]) if isinstance(r, IntakeOutcome)] == [
        "accepted",
        "accepted",
    ]
    inbox, snapshots, jobs = await rows(database)
    assert sorted(i.external_id for i in inbox) == ["m1", "m3"]
    assert len(snapshots) == 2 and len(jobs) == 2


async def test_a_snapshot_stored_by_the_orm_is_compared_by_time(
    database: Database, connection_id: int, record: Record
) -> None:
    # The intake writes with its own SQL; rows it compares against, and rows it writes, must
    # match what SQLAlchemy itself stores and reads (SQLite compares datetimes as text).
    stored_at = T0 + timedelta(microseconds=500)
    async with database.session_scope() as session:
        session.add(
            Appointment(
                connection_id=connection_id,
                appointment_id="edA",
                payload={"id": "edA", "name": "by the orm"},
                event_at=stored_at,
                event_type="appointment.created",
                created_at=T0,
                updated_at=T0,
            )
        )
    outcomes = await record(
        database,
        [
            delivery(connection_id, "m1", "edA", stored_at - timedelta(microseconds=1)),
            delivery(connection_id, "m2", "edB", T0 + timedelta(days=1), name="Termin 📅"),
        ],
    )
    assert [o.status for o in outcomes] == ["stale", "accepted"]
    outcomes = await record(database, [delivery(connection_id, "m3", "edA", stored_at)])
    assert [o.status for o in outcomes] == ["accepted"]  # equal times: the last received wins

    inbox, snapshots, jobs = await rows(database)
    by_id = {snapshot.appointment_id: snapshot for snapshot in snapshots}
    assert by_id["edA"].payload == {"id": "edA", "name": "m3"}
    assert by_id["edA"].event_at == stored_at
    assert by_id["edA"].created_at == T0  # an update keeps when the snapshot was first stored
    assert by_id["edA"].updated_at > T0
    assert by_id["edB"].payload == {"id": "edB", "name": "Termin 📅"}
    assert by_id["edB"].event_at == T0 + timedelta(days=1)
    assert by_id["edB"].canceled is False
    assert [i.outcome for i in inbox] == ["stale", "accepted", "accepted"]
    assert all(i.received_at.tzinfo is UTC for i in inbox)
    assert sorted(job.args["appointment_id"] for job in jobs) == ["edA", "edB"]


def _with_employees(d: Delivery, *resources: str) -> Delivery:
    assert d.event.appointment is not None
    d.event.appointment["bookingResourceList"] = [
        {"id": resource, "type": "EMPLOYEE"} for resource in resources
    ] + [{"id": "room-1", "type": "ROOM"}]
    return d


async def test_a_job_whose_appointment_is_in_one_mailbox_names_it(
    database: Database, connection_id: int, record: Record
) -> None:
    """The job names the mailbox its appointment's mapped employees share (the queue then
    limits running jobs per mailbox across every worker process); none when they are in
    several mailboxes, or none of them is mapped."""
    async with database.session_scope() as session:
        for resource, mailbox in [
            ("brMax", "max@contoso.example"),
            ("brMaxToo", "Max@Contoso.example"),  # the same mailbox, spelled otherwise
            ("brErika", "erika@contoso.example"),
        ]:
            session.add(
                Employee(connection_id=connection_id, booking_resource_id=resource, mailbox=mailbox)
            )
    await record(
        database,
        [
            _with_employees(delivery(connection_id, "w1", "edOne", T0), "brMax"),
            _with_employees(delivery(connection_id, "w2", "edSame", T0), "brMax", "brMaxToo"),
            _with_employees(delivery(connection_id, "w3", "edHalf", T0), "brErika", "brNobody"),
            _with_employees(delivery(connection_id, "w4", "edTwo", T0), "brMax", "brErika"),
            _with_employees(delivery(connection_id, "w5", "edNone", T0), "brNobody"),
            delivery(connection_id, "w6", "edEmpty", T0),
        ],
    )
    _, _, jobs = await rows(database)
    assert {job.args["appointment_id"]: job.mailbox for job in jobs} == {
        "edOne": "max@contoso.example",
        "edSame": "max@contoso.example",
        "edHalf": "erika@contoso.example",
        "edTwo": None,
        "edNone": None,
        "edEmpty": None,
    }


async def test_deliveries_arriving_together_share_a_transaction(
    database: Database, connection_id: int
) -> None:
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(database.engine.sync_engine, "commit", count)
    intake = build_intake(database)
    outcomes = await asyncio.gather(
        *(intake.record(delivery(connection_id, f"m{i}", f"ed{i}", T0)) for i in range(20))
    )
    assert [o.status for o in outcomes] == ["accepted"] * 20
    assert len({o.job_id for o in outcomes}) == 20
    assert 1 <= commits <= 2  # the first alone at most, then the rest together
    inbox, snapshots, jobs = await rows(database)
    assert len(inbox) == len(snapshots) == len(jobs) == 20
