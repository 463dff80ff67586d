"""The delta runner: one calendarView delta run of one mailbox. calbridge's own events are told
apart from a person's changes to them (the connection's `outlook_changes` policy handles
those); every other event becomes, updates or removes a busy block.

A run alternates Graph reads with short transactions of its own: each page is read and judged
outside any transaction, then written in one, so no transaction waits on Graph.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app import logs
from app.busy import policy
from app.busy import repository as repo
from app.busy.blocks import BlockData, block_of, needs_master, with_master
from app.busy.judging import (
    Conflict,
    expected_body,
    judge_event,
    judge_read,
    overlaps,
)
from app.config import Settings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.graph.client import GraphClient
from app.graph.errors import GraphError, ItemNotFound, SyncStateNotFound
from app.graph.schemas import DeltaPage, Event
from app.history import repository as history
from app.history.messages import message
from app.models import Appointment, Connection, EventMapping, SyncRecord
from app.models.base import utcnow
from app.sync.keys import transaction_id
from app.sync.settings import TranslationSettings, translation_settings
from app.sync.translate import EventBody

log = logging.getLogger(__name__)

#: How far back the window reaches: an event that just ended may still matter to bookingtime.
WINDOW_BEFORE = timedelta(days=1)

PageHook = Callable[[DeltaPage], Awaitable[None]]


def delta_window(now: datetime, horizon_days: int) -> tuple[datetime, datetime]:
    """now − 1 day … now + horizon, widened to whole UTC days so the window (and with it the
    delta link) stays the same all day; the next day rolls it."""
    today = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    return today - WINDOW_BEFORE, today + timedelta(days=horizon_days + 1)


@dataclass
class DeltaOutcome:
    """What one run did (for logs and tests)."""

    pages: int = 0
    full: bool = False
    resets: int = 0
    blocks_written: int = 0
    blocks_removed: int = 0
    echoes: int = 0
    conflicts: int = 0
    strays_removed: int = 0


@dataclass
class _PagePlan:
    blocks: list[BlockData] = field(default_factory=list)
    unblock: set[str] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    echoes: int = 0
    # calbridge's events no mapping row accounts for: (event id, appointment id, employee).
    strays: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class _Run:
    database: Database
    client: GraphClient
    connection: Connection
    settings: TranslationSettings
    mailbox: str
    job_id: int | None
    page_size: int | None
    after_commit: PageHook | None
    outcome: DeltaOutcome = field(default_factory=DeltaOutcome)
    # calbridge's events a full round begun in this run returned; None otherwise.
    seen_own: set[str] | None = None

    def expected(
        self,
        row: EventMapping,
        snapshots: Mapping[str, Appointment],
        employees: Mapping[str, str],
    ) -> EventBody | None:
        return expected_body(self.settings, row, snapshots, employees)


async def sync_mailbox_impl(
    *,
    database: Database,
    settings: Settings,
    secret_box: SecretBox,
    graph: GraphClients,
    connection_id: int,
    mailbox: str,
    full: bool = False,
    job_id: int | None = None,
    now: datetime | None = None,
    page_size: int | None = None,
    after_commit: PageHook | None = None,
) -> DeltaOutcome:
    """Bring the mailbox's busy blocks and calbridge's view of its own events up to date.

    Each page's changes are committed before the link to the next page (or the new delta link)
    is stored, so a crash in between re-runs that page, which is idempotent. `after_commit` runs
    between the two (tests use it to crash there). A lost delta token (410 /
    syncStateNotFound) starts a full round over; other Graph errors propagate to the queue,
    which decides on the retry.
    """
    now = now or utcnow()
    async with database.session_scope() as session:
        connection = await repo.connection(session, connection_id)
        mapped = connection is not None and await repo.is_mapped(session, connection_id, mailbox)
    if connection is None or not mapped:
        log.info("sync.mailbox %s/%s: not mapped (any more), nothing to do", connection_id, mailbox)
        return DeltaOutcome()
    logs.bind(organization_id=connection.organization_id, mailbox=mailbox)
    run = _Run(
        database=database,
        client=graph.client_for(connection, secret_box),
        connection=connection,
        settings=translation_settings(connection),
        mailbox=mailbox,
        job_id=job_id,
        page_size=page_size,
        after_commit=after_commit,
    )
    window = delta_window(now, settings.outlook.horizon_days)
    try:
        try:
            await _round(run, window, full=full)
        except SyncStateNotFound:
            log.warning("sync.mailbox %s: delta token lost, full resync", mailbox)
            run.outcome.resets += 1
            await _round(run, window, full=True)
    except GraphError as error:
        if error.permanent:
            async with database.session_scope() as session:
                await policy.record_failure(
                    session, connection=connection, mailbox=mailbox, error=error, job_id=job_id
                )
        raise
    return run.outcome


async def _round(run: _Run, window: tuple[datetime, datetime], *, full: bool) -> None:
    connection_id = run.connection.id
    async with run.database.session_scope() as session:
        state = await repo.sync_state(session, connection_id, run.mailbox)
        stored_window = (state.window_start, state.window_end)
        if full or state.delta_link is None or stored_window != window:
            state.delta_link = None
            state.window_start, state.window_end = window
            state.last_full_sync_at = utcnow()
        link = state.delta_link
        # A full round is under way until a round completes after it began (it may span runs
        # when one crashed): blocks it has not touched by its end are of events that are gone.
        began = state.last_full_sync_at
        full_since = (
            began
            if began is not None and (state.last_synced_at is None or state.last_synced_at < began)
            else None
        )
    run.outcome.full = run.outcome.full or full_since is not None
    run.seen_own = set() if link is None else None
    if link is None:
        pages = run.client.delta_start(run.mailbox, *window, page_size=run.page_size)
    else:
        pages = run.client.delta_follow(run.mailbox, link, page_size=run.page_size)
    async for page in pages:
        plan = await _plan_page(run, page)
        if page.delta_link is not None and run.seen_own is not None:
            plan.conflicts += await _missing_own(run, window, run.seen_own)
        async with run.database.session_scope() as session:
            await _apply(run, session, plan)
        await _remove_strays(run, plan.strays)
        if run.after_commit is not None:
            await run.after_commit(page)
        async with run.database.session_scope() as session:
            state = await repo.sync_state(session, connection_id, run.mailbox)
            state.delta_link = page.next_link or page.delta_link
            if page.delta_link is not None:
                if full_since is not None:
                    run.outcome.blocks_removed += await repo.prune_blocks(
                        session, connection_id, run.mailbox, not_seen_since=full_since
                    )
                state.last_synced_at = utcnow()
        run.outcome.pages += 1


# --- one page: read, judge, then write ---------------------------------------------------------


async def _plan_page(run: _Run, page: DeltaPage) -> _PagePlan:
    """Decide what each item means; the only Graph calls are reads (a removed own event, a
    series master for slim occurrences), never for an echo."""
    connection_id = run.connection.id
    ids = {event.id for event in page.events} | {removed.id for removed in page.removed}
    async with run.database.session_scope() as session:
        rows = await repo.mappings_by_event_id(session, connection_id, ids)
        mailbox_rows = (
            await repo.mailbox_mappings(session, connection_id, run.mailbox)
            if any(e.transaction_id and e.id not in rows for e in page.events)
            else []
        )
        # PostgreSQL reads each statement at its own snapshot (READ COMMITTED): an id the
        # executor stored after the read by id shows up here only. Its event is calbridge's
        # own, not a stray to delete.
        for stored in mailbox_rows:
            if stored.graph_event_id in ids and stored.graph_event_id not in rows:
                rows[stored.graph_event_id] = stored
        snapshots = await repo.snapshots(
            session, connection_id, {r.appointment_id for r in rows.values()}
        )
        employees = await repo.employees(session, connection_id) if rows else {}
    org = run.connection.organization_id
    # Every create calbridge made in this mailbox, by transactionId (rows only when the page
    # has an event no row knows by id).
    own_txids = {
        transaction_id(org, row.appointment_id, row.booking_resource_id, row.generation): row
        for row in mailbox_rows
    }

    plan = _PagePlan()
    others: list[Event] = []
    for event in page.events:
        row = rows.get(event.id)
        if row is not None:
            if run.seen_own is not None:
                run.seen_own.add(event.id)
            plan.unblock.add(event.id)
            conflict = judge_event(event, row, run.expected(row, snapshots, employees))
            if conflict is None:
                plan.echoes += 1
            else:
                plan.conflicts.append(conflict)
        elif (owner := own_txids.get(event.transaction_id or "")) is not None:
            # One of calbridge's creates, though no row knows this id (delta shows no tags).
            plan.unblock.add(event.id)
            if owner.graph_event_id is None and not owner.deleted:
                plan.echoes += 1  # in flight: the executor stores the id, or its retry adopts it
            else:
                # Carried out after calbridge gave up on it and moved on (cancelled, created
                # again): a stray that would break "one event per appointment and mailbox".
                plan.strays.append((event.id, owner.appointment_id, owner.booking_resource_id))
        else:
            others.append(event)

    for event in await hydrate(run.client, run.mailbox, others):
        block = block_of(event, subjects=run.settings.busy_subjects)
        if block is None:
            plan.unblock.add(event.id)
        else:
            plan.blocks.append(block)

    for removed in page.removed:
        plan.unblock.add(removed.id)
        row = rows.get(removed.id)
        if row is not None and run.seen_own is not None:
            run.seen_own.add(removed.id)
        if row is None or row.deleted or row.detached:
            continue
        conflict = await _judge_removed(run, removed.id, row, snapshots, employees)
        if conflict is None:
            plan.echoes += 1
        else:
            plan.conflicts.append(conflict)
    return plan


async def _apply(run: _Run, session: AsyncSession, plan: _PagePlan) -> None:
    connection_id = run.connection.id
    written = {block.graph_event_id for block in plan.blocks}
    removed = await repo.delete_blocks(session, connection_id, run.mailbox, plan.unblock - written)
    await repo.upsert_blocks(session, connection_id, run.mailbox, plan.blocks, seen_at=utcnow())
    for conflict in plan.conflicts:
        await policy.handle_conflict(
            session,
            connection=run.connection,
            settings=run.settings,
            job_id=run.job_id,
            conflict=conflict,
        )
    run.outcome.blocks_written += len(plan.blocks)
    run.outcome.blocks_removed += removed
    run.outcome.echoes += plan.echoes
    run.outcome.conflicts += len(plan.conflicts)


async def _remove_strays(run: _Run, strays: Sequence[tuple[str, str, str]]) -> None:
    """Delete calbridge's stray events (after the page is committed, outside any transaction)
    and record each, so exactly one event per appointment and mailbox holds in the end."""
    for event_id, appointment_id, resource in strays:
        try:
            result = await run.client.delete_event(run.mailbox, event_id)
            request_id = result.request_id
        except ItemNotFound as gone:
            request_id = gone.request_id
        params = {"mailbox": run.mailbox, "event_id": event_id}
        async with run.database.session_scope() as session:
            history.add_record(
                session,
                SyncRecord(
                    connection_id=run.connection.id,
                    appointment_id=appointment_id,
                    booking_resource_id=resource,
                    mailbox=run.mailbox,
                    job_id=run.job_id,
                    action="delete",
                    status="success",
                    code="stray_removed",
                    message=message("stray_removed", run.connection.locale, params),
                    details=params,
                    graph_request_id=request_id,
                ),
            )
        run.outcome.strays_removed += 1


async def _judge_removed(
    run: _Run,
    event_id: str,
    row: EventMapping,
    snapshots: Mapping[str, Appointment],
    employees: Mapping[str, str],
) -> Conflict | None:
    """`@removed` says deleted or out of the window; only a read tells which."""
    expected = run.expected(row, snapshots, employees)
    try:
        found: Event | None = (await run.client.get_event(run.mailbox, event_id)).value
    except ItemNotFound:
        found = None
    return judge_read(found, event_id, row, expected)


async def _missing_own(
    run: _Run, window: tuple[datetime, datetime], seen: set[str]
) -> list[Conflict]:
    """At the end of a full round: calbridge's events inside the window that it did not return
    were deleted or moved away while no delta ran (a 410, missed notifications)."""
    connection_id = run.connection.id
    async with run.database.session_scope() as session:
        rows = [
            row
            for row in await repo.live_rows(session, connection_id, run.mailbox)
            if row.graph_event_id not in seen
        ]
        snapshots = await repo.snapshots(session, connection_id, {r.appointment_id for r in rows})
        employees = await repo.employees(session, connection_id) if rows else {}
    conflicts = []
    for row in rows:
        expected = run.expected(row, snapshots, employees)
        if expected is None or row.graph_event_id is None:
            continue
        if not overlaps(expected, window):
            continue  # outside the window: the round could not have returned it
        conflict = await _judge_removed(run, row.graph_event_id, row, snapshots, employees)
        if conflict is not None:
            conflicts.append(conflict)
    return conflicts


async def hydrate(client: GraphClient, mailbox: str, events: Sequence[Event]) -> list[Event]:
    """Occurrences that came without their series' properties get them from the master (one
    read per series and page)."""
    masters: dict[str, Event | None] = {}
    result = []
    for event in events:
        master_id = event.series_master_id
        if master_id is None or not needs_master(event):
            result.append(event)
            continue
        if master_id not in masters:
            try:
                masters[master_id] = (await client.get_event(mailbox, master_id)).value
            except ItemNotFound:
                masters[master_id] = None
        result.append(with_master(event, masters[master_id]))
    return result
