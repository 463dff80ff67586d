"""The queue's SQL around its jobs: enqueue, periodic ticks, mailbox throttles, the admin's
list and retry, pruning (a claim's SQL is in claim.py, a claimed job's run's in runs.py).

Every function runs in the caller's session and transaction (the transactional outbox: a job is
queued if and only if the caller's transaction commits). Time always comes from the caller
(`now`), never from the database clock, so every process and every test agrees on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Table,
    bindparam,
    case,
    delete,
    exists,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Job, Mailbox
from app.models.base import UTCDateTime, utcnow
from app.queue.errors import DuplicatePendingJob, JobNotFound, JobNotRetriable

PENDING: Final = "pending"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
DEAD: Final = "dead"
RETRIABLE_STATES: Final = (DEAD, FAILED)

MAX_ERROR_CHARS = 2000

# The queue's statements name the tables' columns (Core), not the ORM entities: they load no
# objects, and the ORM's handling of a statement would cost more than the statement itself.
# Only the admin's functions, which return `Job` objects, go through the ORM.
job_table = cast(Table, Job.__table__)
mailbox_table = cast(Table, Mailbox.__table__)

# The predicate of the partial unique index on dedupe_key (app/models/job.py), as SQL text:
# PostgreSQL infers the index ON CONFLICT names only from the same predicate, not a parameter.
_PENDING_ONLY = text("state = 'pending'")


def error_text(error: BaseException | str) -> str:
    """`Type: message`, truncated: what `last_error` stores."""
    value = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if len(value) > MAX_ERROR_CHARS:
        value = value[: MAX_ERROR_CHARS - 1] + "…"
    return value


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT: both have ON CONFLICT, each its own construct."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# --- enqueue ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to add with `enqueue_many`."""

    kind: str
    args: dict[str, Any]
    dedupe_key: str
    serial_key: str | None = None
    mailbox: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None


def keyed_job(
    kind: str,
    key: str,
    args: dict[str, Any],
    *,
    flag: str | None = None,
    serial_key: str | None = None,
    mailbox: str | None = None,
) -> NewJob:
    """A job that is pending at most once per `key` (dedupe key `kind:key`).

    `flag` names a boolean argument set for this job (`force`, `full`...): the job gets its own
    dedupe key, so a pending plain job never swallows it, while a shared `serial_key` still runs
    the two one after the other.
    """
    dedupe_key = f"{kind}:{key}"
    if flag is not None:
        args = {**args, flag: True}
        dedupe_key += f":{flag}"
    return NewJob(kind, args, dedupe_key, serial_key=serial_key, mailbox=mailbox)


def _pending_job_statement(dialect: str) -> Any:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(job_table)
    returning: list[Any] = [job_table.c.id, job_table.c.dedupe_key]
    if dialect == "postgresql":
        # A row the statement inserted has no xmax; one it updated (or locked) has one.
        returning.append(literal_column(f"{job_table.name}.xmax = 0").label("inserted"))
    # A pending twin's run_at becomes least(its own, the new job's): a newer state is never held
    # back by the backoff of the older state's failed attempt. Only an earlier run_at is
    # written, but PostgreSQL locks the twin either way, so no worker claims it (and reads the
    # older state) before the caller's transaction, which stored the newer one, has committed.
    return insert.on_conflict_do_update(
        index_elements=[job_table.c.dedupe_key],
        index_where=_PENDING_ONLY,
        set_={"run_at": insert.excluded.run_at},
        where=job_table.c.run_at > insert.excluded.run_at,
    ).returning(*returning)


# Every webhook and job enqueues: the statement is built once per dialect, not per call.
_PENDING_JOB = {dialect: _pending_job_statement(dialect) for dialect in ("sqlite", "postgresql")}
# SQLite cannot tell an inserted row from an updated one in RETURNING; it has one writer at a
# time, so the twins read just before the upsert are exactly the rows it can update.
# Only run on SQLite. The predicate is the partial unique index's own text, marked `likely()`:
# with a bound `state = ?`, or a list of keys, SQLite's planner chose the (state, run_at) index
# instead and scanned every pending job, so a backlog made every webhook slower.
_PENDING_TWINS = select(job_table.c.id).where(
    text("likely(state = 'pending')"),
    job_table.c.dedupe_key.in_(bindparam("dedupe_keys", expanding=True)),
)


async def _upsert_pending(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> dict[str | None, int | None]:
    """INSERT the rows, but for a dedupe key a pending job has already, pull that job's run_at
    forward instead. Each key's new job id, or None where the key was pending already."""
    dialect = session.get_bind().dialect.name
    keys = [row["dedupe_key"] for row in rows if row["dedupe_key"] is not None]
    twins: set[int] = set()
    if dialect != "postgresql" and keys:
        twins = set((await session.execute(_PENDING_TWINS, {"dedupe_keys": keys})).scalars())
    created: dict[str | None, int | None] = {}
    for returned in await session.execute(_PENDING_JOB[dialect], rows):
        inserted = returned.inserted if dialect == "postgresql" else returned.id not in twins
        created[returned.dedupe_key] = returned.id if inserted else None
    return created


def _row(
    *,
    kind: str,
    args: dict[str, Any] | None,
    dedupe_key: str | None,
    serial_key: str | None,
    mailbox: str | None,
    run_at: datetime | None,
    max_attempts: int | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "args": args or {},
        "state": PENDING,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "dedupe_key": dedupe_key,
        "serial_key": serial_key,
        "mailbox": mailbox,
        "created_at": now,
    }


async def enqueue_many(
    session: AsyncSession, jobs: Sequence[NewJob], *, now: datetime | None = None
) -> dict[str, int | None]:
    """Add jobs in the caller's transaction; `now` (default: the current time) is their
    creation time, and the run_at of those without one.

    Returns each dedupe key's new job id, or None where a pending job already had the key (or an
    earlier job of the same list: the first one wins); that job then runs no later than this
    one would have.
    """
    now = now or utcnow()
    unique: dict[str, NewJob] = {}
    for job in jobs:
        unique.setdefault(job.dedupe_key, job)
    if not unique:
        return {}
    rows = [
        _row(
            kind=job.kind,
            args=job.args,
            dedupe_key=job.dedupe_key,
            serial_key=job.serial_key,
            mailbox=job.mailbox,
            run_at=job.run_at,
            max_attempts=job.max_attempts,
            now=now,
        )
        for job in unique.values()
    ]
    created = await _upsert_pending(session, rows)
    return {key: created.get(key) for key in unique}


async def enqueue(
    session: AsyncSession,
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    serial_key: str | None = None,
    mailbox: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    now: datetime | None = None,
) -> int | None:
    """One job, which may have no dedupe key, in the caller's transaction: its id, or None when
    a pending job has the same dedupe key."""
    row = _row(
        kind=kind,
        args=args,
        dedupe_key=dedupe_key,
        serial_key=serial_key,
        mailbox=mailbox,
        run_at=run_at,
        max_attempts=max_attempts,
        now=now or utcnow(),
    )
    return next(iter((await _upsert_pending(session, [row])).values()), None)


async def pending_twin(session: AsyncSession, dedupe_key: str) -> int | None:
    """The pending job with this dedupe key, locked. FOR UPDATE: a claimer holding the twin
    finishes first, so a twin found here stays pending."""
    query = (
        select(job_table.c.id)
        .where(job_table.c.dedupe_key == dedupe_key, _PENDING_ONLY)
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


# --- periodic jobs -------------------------------------------------------------------------


def next_tick(now: datetime, every_seconds: float) -> datetime:
    """The first multiple of the interval (counted from the Unix epoch) strictly after `now`."""
    index = math.floor(now.timestamp() / every_seconds) + 1
    return datetime.fromtimestamp(index * every_seconds, UTC)


def tick_dedupe_key(kind: str, tick: datetime) -> str:
    return f"periodic:{kind}:{round(tick.timestamp())}"


async def schedule_tick(
    session: AsyncSession,
    kind: str,
    every_seconds: float,
    *,
    now: datetime,
    only_if_idle: bool = False,
) -> int | None:
    """Enqueue the next tick of a periodic kind unless a job for that tick exists in any state.

    The dedupe key names the tick, so any number of processes doing this at once add one job,
    and a tick that already ran (a process with a late clock) is not added again. With
    `only_if_idle` nothing is added while a job of the kind is pending or running: that job
    schedules the next tick itself when it ends.
    """
    tick = next_tick(now, every_seconds)
    key = tick_dedupe_key(kind, tick)
    other = job_table.alias("other_job").c
    conditions: list[ColumnElement[bool]] = [
        ~exists().where(other.kind == kind, other.dedupe_key == key)
    ]
    if only_if_idle:
        conditions.append(~exists().where(other.kind == kind, other.state.in_((PENDING, RUNNING))))
    columns = {
        "kind": literal(kind),
        "args": literal({}, job_table.c.args.type),
        "state": literal(PENDING),
        "run_at": literal(tick, UTCDateTime()),
        "attempts": literal(0),
        "dedupe_key": literal(key),
        "created_at": literal(now, UTCDateTime()),
    }
    # SQLite needs the WHERE clause here anyway: it disambiguates INSERT … SELECT … ON CONFLICT.
    source = select(*columns.values()).where(*conditions)
    statement = (
        _insert(session)(job_table)
        .from_select(list(columns), source, include_defaults=False)
        .on_conflict_do_nothing(index_elements=[job_table.c.dedupe_key], index_where=_PENDING_ONLY)
        .returning(job_table.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


# --- mailboxes -----------------------------------------------------------------------------


async def throttle_mailbox(session: AsyncSession, address: str, until: datetime) -> None:
    """No job of this mailbox is claimed before `until` (an earlier throttle is never shortened)."""
    insert = _insert(session)(mailbox_table).values(address=address, throttled_until=until)
    current = mailbox_table.c.throttled_until
    later = case(
        (current > insert.excluded.throttled_until, current),
        else_=insert.excluded.throttled_until,
    )
    await session.execute(
        insert.on_conflict_do_update(index_elements=["address"], set_={"throttled_until": later})
    )


# --- admin ---------------------------------------------------------------------------------


async def list_jobs(
    session: AsyncSession,
    *,
    state: str | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Job]:
    """Jobs newest first, optionally of one state and kind, below a cursor id."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    return list((await session.scalars(query)).all())


async def requeue(session: AsyncSession, job_id: int, *, now: datetime) -> Job:
    """A dead or failed job back to pending, due now, with its attempts reset."""
    query = select(Job.state, Job.dedupe_key).where(Job.id == job_id).with_for_update()
    current = (await session.execute(query)).one_or_none()
    if current is None:
        raise JobNotFound(job_id)
    if current.state not in RETRIABLE_STATES:
        raise JobNotRetriable(job_id, current.state)
    if current.dedupe_key is not None:
        twin = await pending_twin(session, current.dedupe_key)
        if twin is not None:
            raise DuplicatePendingJob(job_id, twin)
    statement = (
        update(Job)
        .where(Job.id == job_id)
        .values(
            state=PENDING,
            run_at=now,
            attempts=0,
            worker_id=None,
            lease_expires_at=None,
            started_at=None,
            finished_at=None,
        )
        .returning(Job)
        .execution_options(synchronize_session=False)
    )
    try:
        # A twin enqueued concurrently (PostgreSQL) violates the pending-dedupe index.
        async with session.begin_nested():
            job = (await session.execute(statement)).scalar_one()
    except IntegrityError as exc:
        raise DuplicatePendingJob(job_id, None) from exc
    return job


# --- retention -----------------------------------------------------------------------------


async def prune_done_jobs(
    session: AsyncSession, *, finished_before: datetime, limit: int | None = None
) -> int:
    """Delete `done` jobs finished before the cutoff (at most `limit`); the number deleted."""
    c = job_table.c
    doomed = select(c.id).where(c.state == DONE, c.finished_at < finished_before)
    if limit is not None:
        doomed = doomed.limit(limit)
    statement = delete(job_table).where(c.id.in_(doomed.scalar_subquery()))
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount
