"""The `sync.mailbox` job: one calendarView delta run of one mailbox. calbridge's own events are
told apart from a person's changes to them (which the connection's `outlook_changes` policy
handles); every other event becomes, updates or removes a busy block. Also the periodic
`sync.mailbox_sweep`, the safety delta of every mapped mailbox.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import partial
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession
from tzlocal.windows_tz import win_tz

from app import logs
from app.config import Settings
from app.connections import secrets
from app.crypto import SecretBox
from app.db import Database, Statements, run_in_session
from app.graph.client import GraphClient
from app.graph.errors import GraphError, ItemNotFound, SyncStateNotFound
from app.graph.schemas import DeltaPage, Event, EventTime
from app.models import Appointment, Connection, EventMapping
from app.models.base import utcnow
from app.outlook import busy_repository as repo
from app.outlook import sub_repository as sub_repo
from app.outlook.jobs import mailbox_sync_job
from app.queue.registry import JobContext
from app.queue.repository import enqueue_many
from app.sync import repository as sync_repo
from app.sync.graph_clients import GraphClients
from app.sync.jobs import sync_job
from app.sync.keys import transaction_id
from app.sync.messages import error_code, message
from app.sync.planner import listed_employees
from app.sync.retry import job_error
from app.sync.timezones import load_zone
from app.sync.translate import EventBody, InvalidAppointment, TranslationSettings, translate

log = logging.getLogger(__name__)

#: How far back the window reaches: an event that just ended may still matter to bookingtime.
WINDOW_BEFORE = timedelta(days=1)

ChangeKind = Literal["edited", "deleted"]
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


@dataclass(frozen=True, slots=True)
class Conflict:
    """A person changed or deleted one of calbridge's events in Outlook."""

    row_id: int
    appointment_id: str
    booking_resource_id: str
    mailbox: str
    event_id: str
    kind: ChangeKind
    change_key: str | None


@dataclass
class _PagePlan:
    blocks: list[repo.BlockData] = field(default_factory=list)
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


# --- job handlers --------------------------------------------------------------------------------


async def sync_mailbox(ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox) -> None:
    """Run with the process's Graph clients and secret box (bound in app.jobs.build_registry)."""
    await sync_mailbox_impl(
        database=ctx.database,
        settings=ctx.settings,
        secret_box=secret_box,
        graph=graph,
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        full=ctx.args.get("full") is True,
        job_id=ctx.job_id,
        now=ctx.clock(),
    )


async def sweep_mailboxes(ctx: JobContext) -> None:
    """Periodic: a delta run of every mapped mailbox, for the notifications Graph dropped."""
    async with ctx.database.session_scope() as session:
        queued = await sweep_impl(session)
    log.info("mailbox sweep: %d delta runs queued", queued)


async def sweep_impl(session: AsyncSession) -> int:
    """Enqueue one `sync.mailbox` per mapped mailbox (a pending one is not doubled)."""
    pairs = await repo.mapped_mailboxes(session)
    created = await enqueue_many(session, [mailbox_sync_job(c, m) for c, m in pairs])
    return sum(1 for job_id in created.values() if job_id is not None)


# --- the run -------------------------------------------------------------------------------------


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
    syncStateNotFound) starts a full round over; Graph errors become the queue's decisions.
    """
    now = now or utcnow()
    async with database.session_scope() as session:
        connection = await session.get(Connection, connection_id)
        mapped = connection is not None and await repo.is_mapped(session, connection_id, mailbox)
    if connection is None or not mapped:
        log.info("sync.mailbox %s/%s: not mapped (any more), nothing to do", connection_id, mailbox)
        return DeltaOutcome()
    logs.bind(organization_id=connection.organization_id, mailbox=mailbox)
    run = _Run(
        database=database,
        client=graph.client_for(connection, secret_box),
        connection=connection,
        settings=sync_repo.translation_settings(connection),
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
        if not error.retryable:
            await _record_failure(database, connection, mailbox, error, job_id)
        raise job_error(error) from error
    return run.outcome


async def _record_failure(
    database: Database,
    connection: Connection,
    mailbox: str,
    error: GraphError,
    job_id: int | None,
) -> None:
    """A delta that failed for good (mailbox gone, consent withdrawn, secret invalid) shows in
    the history and status of every employee of the mailbox, like a failed write does."""
    code, params = error_code(
        error, mailbox=mailbox, tenant=connection.tenant, client_id=connection.client_id
    )
    text = message(code, connection.locale, params)
    now = utcnow()
    async with database.session_scope() as session:
        employees = await sub_repo.mailbox_employees(
            session, connection_id=connection.id, mailbox=mailbox
        )
        await sub_repo.add_records(
            session,
            connection_id=connection.id,
            mailbox=mailbox,
            employees=employees,
            job_id=job_id,
            status="error",
            code=code,
            message=text,
            details=params,
            graph_request_id=error.request_id,
        )

        def statuses(db: Statements) -> None:
            for employee in employees:
                sync_repo.set_employee_status(
                    db,
                    connection_id=connection.id,
                    booking_resource_id=employee,
                    now=now,
                    error_code=code,
                    error_message=text,
                )

        await run_in_session(session, statuses)
        await secrets.mark_rejected(session, connection_id=connection.id, code=code, now=now)


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
            conflict = _judge(run, event, row, snapshots, employees)
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

    for event in await _hydrated(run, others):
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
        await _handle_conflict(run, session, conflict)
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
        record = partial(
            sync_repo.add_record,
            target=sync_repo.Target(run.connection.id, appointment_id, resource, run.mailbox),
            job_id=run.job_id,
            action="delete",
            status="success",
            code="stray_removed",
            message=message("stray_removed", run.connection.locale, params),
            details=params,
            duration_ms=None,
            graph_request_id=request_id,
        )
        await run.database.run_unit(record)
        run.outcome.strays_removed += 1


def _judge(
    run: _Run,
    event: Event,
    row: EventMapping,
    snapshots: Mapping[str, Appointment],
    employees: Mapping[str, str],
) -> Conflict | None:
    """None for an echo of calbridge's own write (or an event calbridge no longer tends), else
    the person's edit."""
    if row.deleted or row.detached:
        return None
    if event.change_key is not None and event.change_key == row.change_key:
        return None
    # The changeKey differs: a person's edit, or our write seen before the executor stored
    # its changeKey, or Exchange re-stamping the item. The last two leave exactly the content
    # calbridge wants (the translation of the latest snapshot; when a write is still pending
    # the stored field_hashes differ from it, and restoring is what that write does anyway).
    expected = _expected(run, row, snapshots, employees)
    if expected is None or same_content(event, expected):
        return None
    return _conflict(row, event.id, "edited", event.change_key)


async def _judge_removed(
    run: _Run,
    event_id: str,
    row: EventMapping,
    snapshots: Mapping[str, Appointment],
    employees: Mapping[str, str],
) -> Conflict | None:
    """`@removed` says deleted or out of the window; only a read tells which."""
    expected = _expected(run, row, snapshots, employees)
    try:
        found = await run.client.get_event(run.mailbox, event_id)
    except ItemNotFound:
        if expected is None:  # calbridge itself is removing it
            return None
        return _conflict(row, event_id, "deleted", None)
    event = found.value
    if event.change_key == row.change_key or expected is None or same_content(event, expected):
        return None  # calbridge moved it out of the window
    return _conflict(row, event_id, "edited", event.change_key)


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
        expected = _expected(run, row, snapshots, employees)
        if expected is None or row.graph_event_id is None:
            continue
        start = _wall_instant(expected.start.date_time, expected.start.time_zone)
        end = _wall_instant(expected.end.date_time, expected.end.time_zone)
        if not (start < window[1] and end > window[0]):
            continue  # outside the window: the round could not have returned it
        conflict = await _judge_removed(run, row.graph_event_id, row, snapshots, employees)
        if conflict is not None:
            conflicts.append(conflict)
    return conflicts


def _conflict(row: EventMapping, event_id: str, kind: ChangeKind, key: str | None) -> Conflict:
    return Conflict(
        row_id=row.id,
        appointment_id=row.appointment_id,
        booking_resource_id=row.booking_resource_id,
        mailbox=row.mailbox,
        event_id=event_id,
        kind=kind,
        change_key=key,
    )


def _expected(
    run: _Run,
    row: EventMapping,
    snapshots: Mapping[str, Appointment],
    employees: Mapping[str, str],
) -> EventBody | None:
    """The event calbridge wants for this row now; None when it wants none there (the
    appointment is cancelled, moved to another employee or mailbox) or cannot tell."""
    snapshot = snapshots.get(row.appointment_id)
    if snapshot is None:
        return None
    payload = dict(snapshot.payload)
    canceled = snapshot.canceled or payload.get("canceled") is True
    if canceled and run.settings.on_cancel == "delete":
        return None
    mailbox = employees.get(row.booking_resource_id)
    listed = listed_employees(payload.get("bookingResourceList"))
    if (
        row.booking_resource_id not in listed
        or mailbox is None
        or repo.mailbox_key(mailbox) != repo.mailbox_key(row.mailbox)
    ):
        return None
    try:
        return translate(payload, run.settings, canceled=canceled)
    except InvalidAppointment:
        return None


async def _handle_conflict(run: _Run, session: AsyncSession, conflict: Conflict) -> None:
    """Apply the connection's `outlook_changes` policy and record it in the history."""
    policy = run.settings.outlook_changes
    row = await repo.mapping_row(session, conflict.row_id)
    if policy == "restore":
        queued = await enqueue_many(
            session, [sync_job(run.connection.id, conflict.appointment_id, force=True)]
        )
        if not any(job_id is not None for job_id in queued.values()):
            # Its restore is already waiting (a page run again after a crash, or a second
            # edit before it ran): recorded then.
            return
        outcome = "restored"
    else:
        if row is not None:
            if policy == "keep":
                row.detached = True
            # The person's version is accounted for: a later round must not report it again.
            if conflict.change_key is not None:
                row.change_key = conflict.change_key
        outcome = "kept" if policy == "keep" else "reported"
    code = f"outlook_{conflict.kind}_{outcome}"
    params: dict[str, Any] = {
        "mailbox": conflict.mailbox,
        "event_id": conflict.event_id,
        "policy": policy,
    }
    target = sync_repo.Target(
        run.connection.id, conflict.appointment_id, conflict.booking_resource_id, conflict.mailbox
    )
    text = message(code, run.connection.locale, params)
    await run_in_session(
        session,
        lambda db: sync_repo.add_record(
            db,
            target,
            job_id=run.job_id,
            action="outlook_change",
            status="conflict",
            code=code,
            message=text,
            details=params,
            duration_ms=None,
            graph_request_id=None,
        ),
    )


# --- busy blocks from events ---------------------------------------------------------------------


async def _hydrated(run: _Run, events: Sequence[Event]) -> list[Event]:
    """Occurrences that came without their series' properties get them from the master (one
    read per series and page)."""
    masters: dict[str, Event | None] = {}
    result = []
    for event in events:
        master_id = event.series_master_id
        if master_id is None or event.show_as is not None:
            result.append(event)
            continue
        if master_id not in masters:
            try:
                masters[master_id] = (await run.client.get_event(run.mailbox, master_id)).value
            except ItemNotFound:
                masters[master_id] = None
        master = masters[master_id]
        if master is None:
            result.append(event.model_copy(update={"is_cancelled": True}))
            continue
        result.append(
            event.model_copy(
                update={
                    "show_as": master.show_as,
                    "is_all_day": event.is_all_day
                    if event.is_all_day is not None
                    else master.is_all_day,
                    "subject": event.subject if event.subject is not None else master.subject,
                    "is_cancelled": event.is_cancelled or master.is_cancelled,
                }
            )
        )
    return result


def block_of(event: Event, *, subjects: bool) -> repo.BlockData | None:
    """The busy block an event makes; None when it blocks nothing (free, cancelled, without
    times) or is a series master (its occurrences are the blocks)."""
    if event.type == "seriesMaster" or event.is_cancelled:
        return None
    show_as = event.show_as or "busy"
    if show_as == "free" or event.start is None or event.end is None:
        return None
    return repo.BlockData(
        graph_event_id=event.id,
        series_master_id=event.series_master_id,
        start_at=graph_instant(event.start),
        end_at=graph_instant(event.end),
        show_as=show_as,
        is_all_day=bool(event.is_all_day),
        subject=event.subject if subjects else None,
    )


def graph_instant(value: EventTime) -> datetime:
    """A dateTimeTimeZone as an aware UTC instant (Graph sends 7 fractional digits)."""
    return _wall_instant(value.date_time, value.time_zone)


def _wall_instant(date_time: str, zone_name: str) -> datetime:
    head, dot, fraction = date_time.partition(".")
    text = f"{head}.{fraction[:6]}" if dot else head
    wall = datetime.fromisoformat(text)
    if wall.tzinfo is not None:
        return wall.astimezone(UTC)
    return wall.replace(tzinfo=_zone(zone_name)).astimezone(UTC)


def _zone(name: str) -> tzinfo:
    if not name or name.upper() in ("UTC", "ETC/UTC", "Z"):
        return UTC
    return load_zone(win_tz.get(name, name)) or UTC


# --- content comparison --------------------------------------------------------------------------

_HEAD = re.compile(r"<head\b.*?</head>", re.S | re.I)
_BREAK = re.compile(r"<br\s*/?>|</p>|</div>", re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _plain(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _body_text(body: Any) -> str:
    if not isinstance(body, Mapping):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType", "text")).lower() == "html":
        content = html.unescape(_TAG.sub("", _BREAK.sub("\n", _HEAD.sub("", content))))
    return _plain(content)


def same_content(event: Event, body: EventBody) -> bool:
    """Whether the event shows what `body` writes, read the way Graph returns it (UTC times,
    HTML body, location with extra fields): each field calbridge writes, compared by meaning."""
    extra = event.model_extra or {}
    if (event.subject or "") != body.subject or (event.show_as or "busy") != body.show_as:
        return False
    if list(event.categories) != list(body.categories):
        return False
    if event.start is None or event.end is None:
        return False
    if graph_instant(event.start) != _wall_instant(body.start.date_time, body.start.time_zone):
        return False
    if graph_instant(event.end) != _wall_instant(body.end.date_time, body.end.time_zone):
        return False
    reminder_on = extra.get("isReminderOn")
    if reminder_on is not None and bool(reminder_on) != (body.reminder_minutes is not None):
        return False
    minutes = extra.get("reminderMinutesBeforeStart")
    if body.reminder_minutes is not None and minutes is not None:
        if minutes != body.reminder_minutes:
            return False
    location = extra.get("location")
    shown = location.get("displayName") if isinstance(location, Mapping) else None
    if _plain(str(shown or "")) != _plain(body.location.display_name):
        return False
    if "body" in extra and _body_text(extra["body"]) != _plain(body.text):
        return False
    return True


__all__ = [
    "Conflict",
    "DeltaOutcome",
    "block_of",
    "delta_window",
    "same_content",
    "sweep_impl",
    "sweep_mailboxes",
    "sync_mailbox",
    "sync_mailbox_impl",
]
