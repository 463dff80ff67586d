"""sync.mailbox against the Graph sandbox over HTTPS, on SQLite and PostgreSQL: a person's events
become busy blocks the busy API serves; calbridge's own writes are echoes; a person's change to
calbridge's events goes through the connection's policy; 410 and crashes recover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from app.busy.blocks import block_of
from app.busy.service import delta_window, hydrate
from app.busy.tasks import MAILBOX_SWEEP, SYNC_MAILBOX, queue_sweep
from app.config import Settings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.graph.errors import GraphError, Throttled
from app.graph.schemas import DeltaPage, Event, GraphResult
from app.models import BusyBlock, CalendarSync, Connection, Employee, EventMapping, SyncRecord
from app.sync.keys import appointment_tag, transaction_id
from app.sync.settings import translation_settings
from app.sync.tasks import SYNC_APPOINTMENT
from app.sync.translate import translate
from app.tasks import build_registry
from tests.busy.delta_helpers import (
    APPOINTMENT,
    MAX_MAILBOX,
    NOW,
    World,
    delta_world,
    outlook_event,
)
from tests.conftest import SECRET_KEY
from tests.sync.samples import MAX, ORG, appointment
from tests.world import MakeWorld

BUSY_URL = f"/api/v1/connections/{ORG}/employees/{{employee}}/busy"


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with delta_world(make_world) as w:
        yield w


async def busy(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    query = {"start": "2025-06-01T00:00:00Z", "end": "2025-06-15T00:00:00Z", **params}
    response = await client.get(BUSY_URL.format(employee=MAX), params=query, headers=headers)
    assert response.status_code == 200, response.text
    intervals: list[dict[str, Any]] = response.json()["intervals"]
    return intervals


async def test_a_persons_meeting_move_and_deletion_reach_the_busy_api(
    world: World, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    meeting = world.control.outlook_create(
        MAX_MAILBOX,
        outlook_event(
            "Dentist", "2025-06-03T09:00:00", "2025-06-03T10:00:00", zone="W. Europe Standard Time"
        ),
    )
    outcome = await world.delta()
    assert outcome.full and outcome.blocks_written == 1
    # 09:00 in Berlin (summer time) is 07:00 UTC.
    assert await busy(client, admin_headers) == [
        {"start": "2025-06-03T07:00:00Z", "end": "2025-06-03T08:00:00Z"}
    ]
    [raw] = await busy(client, admin_headers, merge="false")
    assert raw["showAs"] == "busy" and raw["isAllDay"] is False and "subject" not in raw

    world.control.outlook_edit(
        MAX_MAILBOX,
        meeting,
        {
            "start": {"dateTime": "2025-06-04T13:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2025-06-04T14:30:00", "timeZone": "UTC"},
        },
    )
    outcome = await world.delta()
    assert not outcome.full
    assert await busy(client, admin_headers) == [
        {"start": "2025-06-04T13:00:00Z", "end": "2025-06-04T14:30:00Z"}
    ]

    world.control.outlook_delete(MAX_MAILBOX, meeting)
    await world.delta()
    assert await busy(client, admin_headers) == []
    assert await world.blocks() == []
    [state] = await world.rows(CalendarSync)
    assert state.delta_link and "$deltatoken=" in state.delta_link
    assert state.last_synced_at is not None


async def test_a_recurring_meeting_blocks_every_occurrence(
    world: World, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    series = world.control.outlook_create(
        MAX_MAILBOX,
        outlook_event(
            "Stand-up",
            "2025-06-02T08:00:00",
            "2025-06-02T08:15:00",
            recurrence={
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "startDate": "2025-06-02", "numberOfOccurrences": 5},
            },
        ),
    )
    await world.delta()
    blocks = await world.blocks()
    assert [b.start_at for b in blocks] == [
        datetime(2025, 6, day, 8, 0, tzinfo=UTC) for day in range(2, 7)
    ]
    assert {b.series_master_id for b in blocks} == {series}
    assert len({b.graph_event_id for b in blocks}) == 5
    assert len(await busy(client, admin_headers)) == 5

    world.control.outlook_delete(MAX_MAILBOX, series)
    await world.delta()
    assert await world.blocks() == []


async def test_free_events_are_not_busy(world: World) -> None:
    world.control.outlook_create(
        MAX_MAILBOX,
        outlook_event("Focus", "2025-06-03T09:00:00", "2025-06-03T10:00:00", showAs="free"),
    )
    meeting = world.control.outlook_create(
        MAX_MAILBOX,
        outlook_event("Away", "2025-06-04T00:00:00", "2025-06-05T00:00:00", showAs="oof"),
    )
    await world.delta()
    [block] = await world.blocks()
    assert (block.graph_event_id, block.show_as) == (meeting, "oof")

    world.control.outlook_edit(MAX_MAILBOX, meeting, {"showAs": "free"})
    outcome = await world.delta()
    assert outcome.blocks_removed == 1
    assert await world.blocks() == []


def test_cancelled_events_and_series_masters_are_no_blocks() -> None:
    times = {
        "start": {"dateTime": "2025-06-03T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2025-06-03T10:00:00.0000000", "timeZone": "UTC"},
    }
    cancelled = Event.model_validate({"id": "a", "isCancelled": True, "showAs": "busy", **times})
    master = Event.model_validate({"id": "b", "type": "seriesMaster", **times})
    tentative = Event.model_validate(
        {"id": "c", "showAs": "tentative", "isAllDay": True, "subject": "S", **times}
    )
    assert block_of(cancelled, subjects=True) is None
    assert block_of(master, subjects=True) is None
    block = block_of(tentative, subjects=False)
    assert block is not None
    assert (block.show_as, block.is_all_day, block.subject) == ("tentative", True, None)
    assert block.start_at == datetime(2025, 6, 3, 9, tzinfo=UTC)
    assert block_of(tentative, subjects=True).subject == "S"  # type: ignore[union-attr]


async def test_subjects_are_stored_only_with_the_opt_in(
    world: World, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    world.control.outlook_create(
        MAX_MAILBOX, outlook_event("Private matter", "2025-06-03T09:00:00", "2025-06-03T10:00:00")
    )
    await world.delta()
    [block] = await world.blocks()
    assert block.subject is None
    assert "subject" not in (await busy(client, admin_headers, merge="false"))[0]

    await world.set_event_settings(busy_subjects=True)
    await world.delta(full=True)
    [block] = await world.blocks()
    assert block.subject == "Private matter"
    [raw] = await busy(client, admin_headers, merge="false")
    assert raw["subject"] == "Private matter"
    # Merged intervals never carry subjects.
    assert "subject" not in (await busy(client, admin_headers))[0]


async def test_own_writes_make_no_blocks_and_no_rewrites(world: World) -> None:
    await world.store()
    await world.sync()
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.echoes == 1 and outcome.conflicts == 0
    assert await world.blocks() == []

    # The appointment moves: the update's echo is recognised too.
    await world.store(
        appointment(start="2025-06-02T14:00:00+02:00", end="2025-06-02T15:00:00+02:00")
    )
    await world.sync()
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.echoes == 1 and outcome.conflicts == 0
    assert world.write_count() == writes
    assert await world.blocks() == []
    assert await world.records() == []
    assert await world.pending_jobs(SYNC_APPOINTMENT) == []

    # Moved beyond the window by calbridge: `@removed`, and a read shows it is ours as written.
    await world.store(
        appointment(start="2026-03-02T14:00:00+01:00", end="2026-03-02T15:00:00+01:00")
    )
    await world.sync()
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.echoes == 1 and outcome.conflicts == 0
    # Cancelled: calbridge's own delete comes back as `@removed` of a tombstone.
    await world.store(appointment())
    await world.sync()
    assert (await world.delta()).conflicts == 0
    await world.store(appointment("canceled"))
    await world.sync()
    assert world.events() == []
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.conflicts == 0
    assert world.write_count() == writes
    assert await world.records() == [] and await world.blocks() == []


async def test_an_echo_seen_before_the_executor_stored_it_is_still_an_echo(world: World) -> None:
    await world.store()
    await world.sync()
    # The delta sees the write before the executor stored its changeKey (or Exchange
    # re-stamped the item): the content is what calbridge wrote.
    async with world.database.session_scope() as session:
        row = await session.scalar(select(EventMapping))
        assert row is not None
        row.change_key = "not-yet-stored"
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.echoes == 1 and outcome.conflicts == 0
    assert world.write_count() == writes
    assert await world.records() == [] and await world.blocks() == []

    # An update the delta sees before the executor stored its changeKey and hashes: the row
    # still holds the previous write, the event already shows the new one.
    before = await world.mapping()
    await world.store(
        appointment(start="2025-06-02T16:00:00+02:00", end="2025-06-02T17:00:00+02:00")
    )
    await world.sync()
    async with world.database.session_scope() as session:
        row = await session.get(EventMapping, before.id)
        assert row is not None and row.field_hashes != before.field_hashes
        row.change_key, row.field_hashes = before.change_key, before.field_hashes
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.echoes == 1 and outcome.conflicts == 0
    assert world.write_count() == writes
    assert await world.records() == [] and await world.pending_jobs(SYNC_APPOINTMENT) == []

    # A create whose id is not stored yet: recognised by its transactionId.
    async with world.database.session_scope() as session:
        row = await session.scalar(select(EventMapping))
        assert row is not None
        row.graph_event_id = None
    outcome = await world.delta(full=True)
    assert outcome.echoes == 1
    assert await world.blocks() == []


async def test_restore_puts_an_edited_and_a_deleted_event_back(world: World) -> None:
    await world.store()
    await world.sync()
    [event] = world.events()
    world.control.outlook_edit(MAX_MAILBOX, event["id"], {"subject": "Moved to lunch"})
    outcome = await world.delta()
    assert outcome.conflicts == 1
    [record] = await world.records()
    assert (record.code, record.status, record.action) == (
        "outlook_edited_restored",
        "conflict",
        "outlook_change",
    )
    assert "changed in Outlook" in record.message
    [job] = await world.pending_jobs(SYNC_APPOINTMENT)
    assert job.args["force"] is True
    # A second edit before the restore ran: one restore, one record.
    world.control.outlook_edit(MAX_MAILBOX, event["id"], {"subject": "Moved to dinner"})
    assert (await world.delta()).conflicts == 1
    assert len(await world.records()) == 1
    assert len(await world.pending_jobs(SYNC_APPOINTMENT)) == 1
    assert await world.run_queued_syncs() == 1
    [restored] = world.events()
    assert restored["subject"] != "Moved to lunch"
    assert restored["id"] == event["id"]
    # The restore's own echo is no new conflict.
    assert (await world.delta()).conflicts == 0

    world.control.outlook_delete(MAX_MAILBOX, event["id"])
    outcome = await world.delta()
    assert outcome.conflicts == 1
    assert (await world.records())[-1].code == "outlook_deleted_restored"
    assert await world.run_queued_syncs() == 1
    [recreated] = world.events()
    assert recreated["id"] != event["id"] and recreated["subject"] == restored["subject"]
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.conflicts == 0 and await world.blocks() == []
    assert world.write_count() == writes
    assert len(await world.records()) == 2


async def test_keep_detaches_the_event_and_later_changes_leave_it(world: World) -> None:
    await world.set_event_settings(outlook_changes="keep")
    await world.store()
    await world.sync()
    [event] = world.events()
    world.control.outlook_edit(MAX_MAILBOX, event["id"], {"subject": "Mine now"})
    await world.delta()
    [record] = await world.records()
    assert record.code == "outlook_edited_kept"
    row = await world.mapping()
    assert row.detached
    assert await world.pending_jobs(SYNC_APPOINTMENT) == []

    writes = world.write_count()
    await world.store(
        appointment(start="2025-06-02T14:00:00+02:00", end="2025-06-02T15:00:00+02:00")
    )
    await world.sync()
    await world.sync(force=True)
    assert world.write_count() == writes
    [kept] = world.events()
    assert kept["subject"] == "Mine now"
    assert kept["start"]["dateTime"].startswith("2025-06-02T08:00:00")
    # Nothing further to report: the person's version is accounted for.
    assert (await world.delta(full=True)).conflicts == 0

    # A cancellation still removes it.
    await world.store(appointment("canceled"))
    await world.sync()
    assert world.events() == []


async def test_keep_a_deletion_is_not_recreated(world: World) -> None:
    await world.set_event_settings(outlook_changes="keep")
    await world.store()
    await world.sync()
    await world.delta()
    [event] = world.events()
    world.control.outlook_delete(MAX_MAILBOX, event["id"])
    await world.delta()
    assert [r.code for r in await world.records()] == ["outlook_deleted_kept"]
    await world.store(appointment(name="Renamed"))
    await world.sync()
    assert world.events() == []


async def test_report_only_records(world: World) -> None:
    await world.set_event_settings(outlook_changes="report")
    await world.store()
    await world.sync()
    [event] = world.events()
    world.control.outlook_edit(MAX_MAILBOX, event["id"], {"subject": "Reported"})
    writes = world.write_count()
    await world.delta()
    [record] = await world.records()
    assert record.code == "outlook_edited_reported"
    assert record.booking_resource_id and record.appointment_id
    row = await world.mapping()
    assert not row.detached
    assert await world.pending_jobs(SYNC_APPOINTMENT) == []
    assert world.write_count() == writes
    assert world.events()[0]["subject"] == "Reported"
    # Reported once, not again on every full round.
    await world.delta(full=True)
    assert len(await world.records()) == 1


async def test_a_lost_delta_token_recovers_by_a_full_resync(world: World) -> None:
    first = world.control.outlook_create(
        MAX_MAILBOX, outlook_event("A", "2025-06-03T09:00:00", "2025-06-03T10:00:00")
    )
    await world.delta()
    # A block whose event calbridge never hears about again (its deletion fell into the gap).
    async with world.database.session_scope() as session:
        session.add(
            BusyBlock(
                connection_id=world.connection_id,
                mailbox=MAX_MAILBOX,
                graph_event_id="vanished",
                start_at=datetime(2025, 6, 5, 9, tzinfo=UTC),
                end_at=datetime(2025, 6, 5, 10, tzinfo=UTC),
                show_as="busy",
                updated_at=datetime(2025, 1, 1, tzinfo=UTC),
            )
        )
    second = world.control.outlook_create(
        MAX_MAILBOX, outlook_event("B", "2025-06-04T09:00:00", "2025-06-04T10:00:00")
    )
    world.expire_delta_tokens()
    outcome = await world.delta()
    assert outcome.resets == 1 and outcome.full
    assert [b.graph_event_id for b in await world.blocks()] == [first, second]
    # And the next run is incremental again.
    assert not (await world.delta()).full


async def test_a_crash_between_a_pages_commit_and_its_link_reruns_idempotently(
    world: World,
) -> None:
    ids = [
        world.control.outlook_create(
            MAX_MAILBOX,
            outlook_event(f"M{day}", f"2025-06-{day:02d}T09:00:00", f"2025-06-{day:02d}T10:00:00"),
        )
        for day in range(3, 8)
    ]
    pages: list[DeltaPage] = []

    async def crash_on_second_page(page: DeltaPage) -> None:
        pages.append(page)
        if len(pages) == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        await world.delta(page_size=2, after_commit=crash_on_second_page)
    # Page 2 is committed, but the stored link still points at it.
    assert len(await world.blocks()) == 4
    [state] = await world.rows(CalendarSync)
    assert state.delta_link and "$skiptoken=" in state.delta_link
    assert state.last_synced_at is None

    outcome = await world.delta(page_size=2)
    assert outcome.pages == 2  # page 2 again, then page 3
    blocks = await world.blocks()
    assert [b.graph_event_id for b in blocks] == ids
    [state] = await world.rows(CalendarSync)
    assert state.delta_link and "$deltatoken=" in state.delta_link

    # A crash after the last page: the re-run does it again and changes nothing.
    world.control.outlook_delete(MAX_MAILBOX, ids[0])

    async def crash(page: DeltaPage) -> None:
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        await world.delta(after_commit=crash)
    assert len(await world.blocks()) == 4
    await world.delta()
    assert [b.graph_event_id for b in await world.blocks()] == ids[1:]


async def test_the_window_rolls_daily_with_a_full_round(world: World) -> None:
    late = world.control.outlook_create(
        MAX_MAILBOX, outlook_event("Far", "2025-11-29T09:00:00", "2025-11-29T10:00:00")
    )
    await world.delta()
    assert await world.blocks() == []  # beyond today + 180 days
    assert not (await world.delta(now=NOW + timedelta(hours=6))).full
    outcome = await world.delta(now=NOW + timedelta(days=1))
    assert outcome.full
    [block] = await world.blocks()
    assert block.graph_event_id == late
    [state] = await world.rows(CalendarSync)
    assert (state.window_start, state.window_end) == delta_window(NOW + timedelta(days=1), 180)


def test_delta_window_covers_yesterday_to_the_horizon() -> None:
    start, end = delta_window(datetime(2025, 6, 1, 23, 59, tzinfo=UTC), 180)
    assert start == datetime(2025, 5, 31, tzinfo=UTC)
    assert end == datetime(2025, 6, 1, tzinfo=UTC) + timedelta(days=181)
    assert start <= datetime(2025, 5, 31, 23, 59, tzinfo=UTC)
    assert end >= datetime(2025, 6, 1, 23, 59, tzinfo=UTC) + timedelta(days=180)


async def test_an_unmapped_mailbox_is_left_alone(world: World) -> None:
    world.control.outlook_create(
        MAX_MAILBOX, outlook_event("A", "2025-06-03T09:00:00", "2025-06-03T10:00:00")
    )
    async with world.database.session_scope() as session:
        for employee in await session.scalars(select(Employee)):
            await session.delete(employee)
    outcome = await world.delta()
    assert outcome.pages == 0 and await world.blocks() == []


async def test_the_sweep_queues_one_delta_per_mapped_mailbox(world: World) -> None:
    async with world.database.session_scope() as session:
        session.add_all(
            [
                Employee(
                    connection_id=world.connection_id,
                    booking_resource_id="brOther",
                    mailbox="MAX@contoso.example",
                ),
                Employee(
                    connection_id=world.connection_id,
                    booking_resource_id="brErika",
                    mailbox="erika@contoso.example",
                ),
            ]
        )
    async with world.database.session_scope() as session:
        assert await queue_sweep(session) == 2
    async with world.database.session_scope() as session:
        assert await queue_sweep(session) == 0  # still pending: not doubled
    jobs = await world.pending_jobs(SYNC_MAILBOX)
    assert sorted(j.args["mailbox"].casefold() for j in jobs) == [
        "erika@contoso.example",
        MAX_MAILBOX,
    ]


async def test_the_registry_runs_sync_mailbox_and_the_periodic_sweep() -> None:
    settings = Settings(
        outlook={"safety_delta_seconds": 120},
        _env_file=None,  # type: ignore[call-arg]
    )
    graph = GraphClients(settings)
    try:
        registry = build_registry(
            settings, graph=graph, secret_box=SecretBox([SECRET_KEY.encode()])
        )
    finally:
        await graph.aclose()
    assert SYNC_MAILBOX in registry
    sweep = registry.get(MAILBOX_SWEEP)
    assert sweep is not None and sweep.every_seconds == 120


async def test_occurrences_without_the_series_properties_take_them_from_the_master(
    world: World,
) -> None:
    series = world.control.outlook_create(
        MAX_MAILBOX,
        outlook_event(
            "Jour fixe",
            "2025-06-02T08:00:00",
            "2025-06-02T09:00:00",
            showAs="tentative",
            recurrence={
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "noEnd", "startDate": "2025-06-02"},
            },
        ),
    )
    slim = Event.model_validate(
        {
            "id": "occurrence-1",
            "type": "occurrence",
            "seriesMasterId": series,
            "start": {"dateTime": "2025-06-09T08:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2025-06-09T09:00:00.0000000", "timeZone": "UTC"},
        }
    )
    gone = slim.model_copy(update={"id": "occurrence-2", "series_master_id": "no-such-series"})
    async with world.database.session_scope() as session:
        connection = await session.get(Connection, world.connection_id)
    assert connection is not None
    client = world.graph.client_for(connection, world.secret_box)
    hydrated, orphan = await hydrate(client, MAX_MAILBOX, [slim, gone])
    block = block_of(hydrated, subjects=True)
    assert block is not None
    assert (block.show_as, block.subject, block.series_master_id) == (
        "tentative",
        "Jour fixe",
        series,
    )
    assert block_of(orphan, subjects=True) is None


async def test_a_full_round_notices_own_events_deleted_while_no_delta_ran(world: World) -> None:
    await world.store()
    await world.sync()
    await world.delta()
    [event] = world.events()
    world.control.outlook_delete(MAX_MAILBOX, event["id"])
    world.expire_delta_tokens()  # the deletion's change falls into the gap
    outcome = await world.delta()
    assert outcome.resets == 1 and outcome.conflicts == 1
    assert [r.code for r in await world.records()] == ["outlook_deleted_restored"]
    assert await world.run_queued_syncs() == 1
    assert len(world.events()) == 1
    # Present again: the next full round finds nothing missing.
    assert (await world.delta(full=True)).conflicts == 0


async def test_a_create_carried_out_after_the_cancellation_is_removed(world: World) -> None:
    """A create times out at calbridge, the appointment is cancelled (its lookup finds nothing
    yet, the row becomes a tombstone), then Graph carries the create out: the next delta run
    knows it by its transactionId and removes it."""
    await world.store()
    await world.sync()
    [first] = world.events()
    await world.store(appointment(canceled=True))
    await world.sync()
    assert world.events() == []
    assert (await world.delta()).strays_removed == 0

    async with world.database.session() as session:
        connection = await session.get(Connection, world.connection_id)
        assert connection is not None
    client = world.graph.client_for(connection, world.secret_box)
    late = await client.create_event(
        MAX_MAILBOX,
        translate(appointment(), translation_settings(connection)).to_graph(),
        transaction_id=transaction_id(ORG, APPOINTMENT, MAX, 1),
        tag=appointment_tag(ORG, APPOINTMENT, MAX),
    )
    assert late.value.id != first["id"]
    writes = world.write_count()
    outcome = await world.delta()
    assert outcome.strays_removed == 1 and outcome.conflicts == 0
    assert world.events() == []
    assert world.write_count() == writes + 1  # the one DELETE
    assert await world.blocks() == []
    [record] = await world.records("stray_")
    assert record.details == {"mailbox": MAX_MAILBOX, "event_id": late.value.id}
    assert (record.booking_resource_id, record.appointment_id) == (MAX, APPOINTMENT)
    assert (await world.delta()).strays_removed == 0


async def create_in_flight(world: World) -> GraphResult[Event]:
    """A create whose outcome calbridge does not know yet: its row (generation 1, no event id)
    and the event Graph made for it."""
    await world.store()
    async with world.database.session_scope() as session:
        session.add(
            EventMapping(
                connection_id=world.connection_id,
                appointment_id=APPOINTMENT,
                booking_resource_id=MAX,
                mailbox=MAX_MAILBOX,
                generation=1,
                field_hashes={},
                deleted=False,
            )
        )
        connection = await session.get(Connection, world.connection_id)
        assert connection is not None
    client = world.graph.client_for(connection, world.secret_box)
    return await client.create_event(
        MAX_MAILBOX,
        translate(appointment(), translation_settings(connection)).to_graph(),
        transaction_id=transaction_id(ORG, APPOINTMENT, MAX, 1),
        tag=appointment_tag(ORG, APPOINTMENT, MAX),
    )


async def test_a_create_in_flight_is_left_alone(world: World) -> None:
    """The row of a create of unknown outcome (no id yet): its event is the executor's to adopt,
    neither a stray nor a busy block."""
    await create_in_flight(world)
    outcome = await world.delta()
    assert outcome.strays_removed == 0 and outcome.echoes == 1
    assert len(world.events()) == 1
    assert await world.blocks() == []


async def test_a_create_stored_between_the_pages_reads_is_not_a_stray(world: World) -> None:
    """PostgreSQL reads each statement of a transaction at its own snapshot (READ COMMITTED): the
    executor may store its new event's id after the delta looked the page's ids up and before it
    read the mailbox's rows by transactionId. That event is calbridge's own, not a stray; deleting
    it lost an appointment in the crash test."""
    if world.database.is_sqlite:
        pytest.skip("SQLite reads a whole transaction at one snapshot: no such interleaving")
    created = await create_in_flight(world)
    conninfo = world.database.engine.url.set(drivername="postgresql").render_as_string(False)
    stored: list[str] = []

    def store_between(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Right before the read by mailbox: the executor commits the id on its own connection.
        if "lower(event_mapping.mailbox)" not in statement or stored:
            return
        with psycopg.connect(conninfo, autocommit=True) as other:
            other.execute(
                "UPDATE event_mapping SET graph_event_id = %s, change_key = %s"
                " WHERE appointment_id = %s",
                (created.value.id, created.value.change_key, APPOINTMENT),
            )
        stored.append(created.value.id)

    engine = world.database.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", store_between)
    try:
        outcome = await world.delta()
    finally:
        sa_event.remove(engine, "before_cursor_execute", store_between)
    assert stored == [created.value.id]  # the interleaving did happen
    assert (outcome.strays_removed, outcome.echoes, outcome.conflicts) == (0, 1, 0)
    assert [e["id"] for e in world.events()] == [created.value.id]
    assert await world.blocks() == []
    assert await world.records("stray_") == []


async def test_a_throttled_page_retries_after_graphs_delay_and_resumes(world: World) -> None:
    for day in range(3, 6):
        world.control.outlook_create(
            MAX_MAILBOX,
            outlook_event("M", f"2025-06-{day:02d}T09:00:00", f"2025-06-{day:02d}T10:00:00"),
        )
    # The first request is refused once.
    world.control.faults.add("429", count=1, path="calendarView/delta", retry_after="1")
    with pytest.raises(Throttled) as refused:
        await world.delta(page_size=2)
    assert refused.value.retry_after == 1 and refused.value.throttles_mailbox
    assert await world.blocks() == []
    outcome = await world.delta(page_size=2)
    assert outcome.pages == 2 and len(await world.blocks()) == 3


async def test_a_delta_that_fails_for_good_tells_the_admin(world: World) -> None:
    async with world.database.session() as session:
        connection = await session.get(Connection, world.connection_id)
        assert connection is not None
        client_id = connection.client_id
    world.control.block(client_id, MAX_MAILBOX)
    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.delta()
    [record] = await world.rows(SyncRecord)
    assert (record.code, record.status, record.mailbox) == (
        "access_policy_blocked",
        "error",
        MAX_MAILBOX,
    )
    assert record.booking_resource_id == MAX
    [employee] = await world.rows(Employee)
    assert employee.last_error_code == "access_policy_blocked"
    assert employee.last_error_message == record.message

    # Transient trouble is the queue's business: retried, not reported.
    world.control.block(client_id, MAX_MAILBOX, blocked=False)
    world.control.faults.add("503", count=20, path=r"/delta")
    with pytest.raises(GraphError):
        await world.delta()
    assert len(await world.rows(SyncRecord)) == 1


async def test_a_delta_refused_for_the_secret_marks_the_connection_rejected(world: World) -> None:
    async with world.database.session_scope() as session:
        connection = await session.get(Connection, world.connection_id)
        assert connection is not None
        connection.client_secret_encrypted = world.secret_box.encrypt("not-the-secret")
    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.delta()
    async with world.database.session() as session:
        connection = await session.get(Connection, world.connection_id)
        assert connection is not None
        assert connection.client_secret_rejected_code == "secret_invalid"
    [record] = await world.rows(SyncRecord)
    assert record.code == "secret_invalid"
