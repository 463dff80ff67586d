"""Every query of the job queue: enqueue, claim, heartbeat, outcomes, stall recovery, periodic
ticks, the admin's list and retry, pruning.

Functions taking a session run in the caller's transaction (the transactional outbox);
`JobManager` methods each own one short transaction. Time always comes from the caller (`now`),
never from the database clock, so every process and every test agrees on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import chain
from typing import Any, Final, cast

from pydantic_core import to_json
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CursorResult,
    Select,
    String,
    Table,
    all_,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.config import Settings
from app.db import Database, Statements, memoized, param_marker, run_in_session, to_driver
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
# Candidates a PostgreSQL claim inspects before giving up for this round; a candidate is skipped
# when another worker holds its serial-key or mailbox lock at that very moment.
_MAX_CLAIM_CANDIDATES = 10

_PENDING_WHERE = text("state = 'pending'")
_job = cast(Table, Job.__table__)


def _in_state(column: Any, state: str) -> ColumnElement[bool]:
    """`column = '<state>'`, the state written into the SQL: SQLite prepares a statement again
    at every execution when a parameter is compared with a column that a partial index's WHERE
    names (job.state does), which cost the claim's statement 40 µs a run."""
    return cast(ColumnElement[bool], column == literal_column(f"'{state}'"))


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT (both have ON CONFLICT)."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _update() -> Any:
    # Core-style UPDATE through the ORM entity; no loaded objects need synchronising.
    return update(Job).execution_options(synchronize_session=False)


def error_text(error: BaseException | str) -> str:
    """`Type: message`, truncated: what `last_error` stores."""
    value = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if len(value) > MAX_ERROR_CHARS:
        value = value[: MAX_ERROR_CHARS - 1] + "…"
    return value


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


_JOB_COLUMNS = (
    "kind",
    "args",
    "state",
    "run_at",
    "attempts",
    "max_attempts",
    "dedupe_key",
    "serial_key",
    "mailbox",
    "created_at",
)


@cache
def _finish_statement(with_error: bool) -> Any:
    """The UPDATE that ends a run the worker still holds (see JobManager._held), built once."""
    table = cast(Table, Job.__table__)
    c = table.c
    values: dict[str, Any] = {
        "state": bindparam("v_state"),
        "finished_at": bindparam("v_now", type_=c.finished_at.type),
        "lease_expires_at": None,
    }
    if with_error:
        values["last_error"] = bindparam("v_error")
    return (
        update(table)
        .where(
            c.id == bindparam("w_id"),
            _in_state(c.state, RUNNING),
            c.worker_id == bindparam("w_worker_id"),
            c.attempts == bindparam("w_attempts"),
        )
        .values(values)
        .returning(c.id)
    )


@cache
def _enqueue_statement(dialect: str) -> Any:
    # Built once: constructing an ORM insert per call cost more than executing it.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, Job.__table__)
    return (
        insert(table)
        .values({column: bindparam(column, type_=table.c[column].type) for column in _JOB_COLUMNS})
        .on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=_PENDING_WHERE)
        .returning(table.c.id, table.c.dedupe_key)
    )


def _job_row(
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
) -> int | None:
    """Add a job in the caller's transaction; None when a pending job has the same dedupe key."""
    row = _job_row(
        kind=kind,
        args=args,
        dedupe_key=dedupe_key,
        serial_key=serial_key,
        mailbox=mailbox,
        run_at=run_at,
        max_attempts=max_attempts,
        now=utcnow(),
    )
    statement = _enqueue_statement(session.get_bind().dialect.name)
    return (await session.execute(statement, row)).scalar_one_or_none()


async def enqueue_many(session: AsyncSession, jobs: Sequence[NewJob]) -> dict[str, int | None]:
    """Add several jobs in one statement, in the caller's transaction.

    Returns each dedupe key's new job id, or None where a pending job already had the key (or an
    earlier job of the same list: the first one wins).
    """
    return await run_in_session(session, lambda db: insert_jobs(db, jobs))


def insert_jobs(db: Statements, jobs: Sequence[NewJob]) -> dict[str, int | None]:
    """`enqueue_many` inside a unit of work (`Database.run_unit`, or the caller's session through
    `run_in_session`): one multi-row INSERT per 256 jobs, as plain SQL with values converted by
    the columns' own types."""
    now = utcnow()
    unique: dict[str, NewJob] = {}
    for job in jobs:
        unique.setdefault(job.dedupe_key, job)  # the first job of a key wins
    if not unique:
        return {}
    # Only the datetimes and the JSON need converting (strings and integers pass as they are);
    # a batch's datetimes are mostly one `now`, converted once.
    run_at = memoized(to_driver(db.dialect, _job.c.run_at))
    created_at = to_driver(db.dialect, _job.c.created_at)(now)
    rows = [
        (
            job.kind,
            to_json(job.args or {}).decode(),
            PENDING,
            run_at(job.run_at or now),
            0,
            job.max_attempts,
            job.dedupe_key,
            job.serial_key,
            job.mailbox,
            created_at,
        )
        for job in unique.values()
    ]
    created: dict[str, int] = {}
    for start in range(0, len(rows), _JOB_ROWS_PER_STATEMENT):
        chunk = rows[start : start + _JOB_ROWS_PER_STATEMENT]
        sql = _insert_jobs_sql(db.dialect.name, len(chunk))
        for job_id, key in db.rows(sql, tuple(chain.from_iterable(chunk))):
            created[key] = job_id
    return {key: created.get(key) for key in unique}


_JOB_ROWS_PER_STATEMENT = 256


@cache
def _insert_jobs_sql(dialect_name: str, rows: int) -> str:
    mark = param_marker(dialect_name)
    row = ", ".join(
        f"CAST({mark} AS JSONB)" if column == "args" and dialect_name != "sqlite" else mark
        for column in _JOB_COLUMNS
    )
    return _INSERT_JOBS.format(
        columns=", ".join(_JOB_COLUMNS), values=", ".join([f"({row})"] * rows)
    )


_INSERT_JOBS = """INSERT INTO job ({columns}) VALUES {values}
ON CONFLICT (dedupe_key) WHERE state = 'pending' DO NOTHING
RETURNING id, dedupe_key"""


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
    other = aliased(Job, name="other_job")
    conditions: list[ColumnElement[bool]] = [
        ~exists().where(other.kind == kind, other.dedupe_key == key)
    ]
    if only_if_idle:
        conditions.append(~exists().where(other.kind == kind, other.state.in_((PENDING, RUNNING))))
    columns = {
        "kind": literal(kind),
        "args": literal({}, Job.__table__.c.args.type),
        "state": literal(PENDING),
        "run_at": literal(tick, UTCDateTime()),
        "attempts": literal(0),
        "dedupe_key": literal(key),
        "created_at": literal(now, UTCDateTime()),
    }
    # SQLite needs the WHERE clause here anyway: it disambiguates INSERT … SELECT … ON CONFLICT.
    source = select(*columns.values()).where(*conditions)
    statement = (
        _insert(session)(Job)
        .from_select(list(columns), source, include_defaults=False)
        .on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=_PENDING_WHERE)
        .returning(Job.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


# --- mailboxes -----------------------------------------------------------------------------


async def throttle_mailbox(session: AsyncSession, address: str, until: datetime) -> None:
    """No job of this mailbox is claimed before `until` (an earlier throttle is never shortened)."""
    insert = _insert(session)(Mailbox).values(address=address, throttled_until=until)
    later = case(
        (Mailbox.throttled_until > insert.excluded.throttled_until, Mailbox.throttled_until),
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
    current = (
        await session.execute(
            select(Job.state, Job.dedupe_key).where(Job.id == job_id).with_for_update()
        )
    ).one_or_none()
    if current is None:
        raise JobNotFound(job_id)
    if current.state not in RETRIABLE_STATES:
        raise JobNotRetriable(job_id, current.state)
    if current.dedupe_key is not None:
        twin = await _pending_twin(session, current.dedupe_key)
        if twin is not None:
            raise DuplicatePendingJob(job_id, twin)
    statement = (
        _update()
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
    )
    try:
        # A twin enqueued concurrently (PostgreSQL) violates the pending-dedupe index.
        async with session.begin_nested():
            job = (await session.execute(statement)).scalar_one()
    except IntegrityError as exc:
        raise DuplicatePendingJob(job_id, None) from exc
    return cast(Job, job)


# --- retention -----------------------------------------------------------------------------


async def prune_done_jobs(
    session: AsyncSession, *, finished_before: datetime, limit: int | None = None
) -> int:
    """Delete `done` jobs finished before the cutoff (at most `limit`); the number deleted."""
    doomed = select(Job.id).where(Job.state == DONE, Job.finished_at < finished_before)
    if limit is not None:
        doomed = doomed.limit(limit)
    statement = (
        delete(Job)
        .where(Job.id.in_(doomed.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount


# --- the worker's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds: what it needs to run it and to record how it ended."""

    id: int
    kind: str
    args: dict[str, Any]
    attempts: int  # including this run
    max_attempts: int  # the job's own limit, or the worker default
    dedupe_key: str | None
    serial_key: str | None
    mailbox: str | None
    worker_id: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class StalledJobs:
    """What a stall recovery did: ids put back to pending, and ids that were out of attempts."""

    requeued: list[int]
    dead: list[int]


async def _pending_twin(session: AsyncSession, dedupe_key: str) -> int | None:
    # FOR UPDATE: a claimer holding the twin finishes first, so a twin found here stays pending.
    return (
        await session.execute(
            select(Job.id)
            .where(Job.dedupe_key == dedupe_key, Job.state == PENDING)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def _return_to_pending(
    session: AsyncSession,
    *,
    job_id: int,
    dedupe_key: str | None,
    run_at: datetime,
    now: datetime,
    values: Mapping[str, Any],
) -> int | None:
    """Put a running job back to pending at `run_at`; None, or the twin that superseded it.

    One pending job per dedupe key: when a pending twin exists, this job ends `done` (its work
    is the twin's now) and the twin waits until `run_at` too, as this job would have.
    """
    for _ in range(3):
        twin = await _pending_twin(session, dedupe_key) if dedupe_key is not None else None
        if twin is not None:
            await session.execute(
                _update()
                .where(Job.id == twin)
                .values(
                    run_at=case(
                        (
                            Job.run_at < literal(run_at, UTCDateTime()),
                            literal(run_at, UTCDateTime()),
                        ),
                        else_=Job.run_at,
                    )
                )
            )
            error = values.get("last_error")
            note = f"superseded by job {twin}" + (f" after {error}" if error else "")
            await session.execute(
                _update()
                .where(Job.id == job_id)
                .values(
                    state=DONE,
                    finished_at=now,
                    lease_expires_at=None,
                    last_error=error_text(note),
                )
            )
            return twin
        statement = (
            _update()
            .where(Job.id == job_id)
            .values(state=PENDING, run_at=run_at, lease_expires_at=None, worker_id=None, **values)
        )
        if dedupe_key is None:
            await session.execute(statement)
            return None
        try:
            # A twin enqueued concurrently (PostgreSQL) violates the pending-dedupe index:
            # then look for it again and let it supersede this job.
            async with session.begin_nested():
                await session.execute(statement)
            return None
        except IntegrityError:
            continue
    raise RuntimeError(f"job {job_id}: could not return to pending (dedupe key contended)")


class _ClaimStatements:
    """The claim's statements, built once: composing them costs more than running them. Core
    statements on the table (no ORM entity): a claim needs no objects, and the ORM's bulk-update
    machinery cost more than the UPDATE itself."""

    def __init__(self) -> None:
        now = bindparam("now", type_=UTCDateTime())
        job = _job.c
        running = _job.alias("running_job").c
        earlier = _job.alias("earlier_job").c
        mailboxes = cast(Table, Mailbox.__table__).c
        # Serial key free: no running job with it, and no earlier pending one (enqueue order).
        serial_free = or_(
            job.serial_key.is_(None),
            and_(
                ~exists().where(
                    running.serial_key == job.serial_key, _in_state(running.state, RUNNING)
                ),
                ~exists().where(
                    earlier.serial_key == job.serial_key,
                    _in_state(earlier.state, PENDING),
                    earlier.id < job.id,
                ),
            ),
        )
        # A mailbox takes a job unless it is throttled or at its limit of running jobs. Two
        # ways to check that (bench/claim.py times a claim behind a full mailbox's backlog):
        # SQLite counts each candidate's mailbox's running jobs, cheap while the first
        # candidates can run (the usual case) but a lookup for every job of a full mailbox
        # queued ahead of the first that can (10-12 ms behind 5,000). PostgreSQL finds the
        # full mailboxes once per statement: 2.6 instead of 24 ms behind 5,000, and no dearer in
        # the usual case, where on SQLite it cost every pick 0.13 ms more (128 jobs running).
        # A running count kept per mailbox would serve both.
        mailbox_running = (
            select(func.count())
            .where(running.mailbox == job.mailbox, _in_state(running.state, RUNNING))
            .scalar_subquery()
        )
        counted = or_(
            job.mailbox.is_(None),
            and_(
                ~exists().where(mailboxes.address == job.mailbox, mailboxes.throttled_until > now),
                mailbox_running < bindparam("mailbox_limit"),
            ),
        )
        full = (
            select(running.mailbox)
            .where(running.mailbox.is_not(None), _in_state(running.state, RUNNING))
            .group_by(running.mailbox)
            .having(func.count() >= bindparam("mailbox_limit"))
        )
        throttled = select(mailboxes.address).where(mailboxes.throttled_until > now)
        found_once = or_(job.mailbox.is_(None), job.mailbox.not_in(union(full, throttled)))

        def claimable(mailbox_free: ColumnElement[bool]) -> ColumnElement[bool]:
            return and_(
                _in_state(job.state, PENDING),
                job.run_at <= now,
                job.kind.in_(bindparam("kinds", expanding=True)),
                mailbox_free,  # first: the serial key's checks cost a lookup per job
                serial_free,
            )

        def first(mailbox_free: ColumnElement[bool]) -> Select[Any]:
            return (
                select(job.id, job.serial_key, job.mailbox)
                .where(claimable(mailbox_free))
                .order_by(job.run_at, job.id)
                .limit(1)
            )

        # PostgreSQL's claimers skip the keys another claimer holds (see _claim_postgres). As
        # arrays (`<> ALL`), not IN lists: one statement text however many are skipped, which
        # PostgreSQL then parses and plans once (an IN list's text changes with its length).
        def skipped(name: str, item: Any) -> Any:
            return all_(bindparam(name, type_=postgresql.ARRAY(item)))

        self.candidate = first(found_once).where(
            job.id != skipped("skipped", BigInteger()),
            or_(
                job.serial_key.is_(None), job.serial_key != skipped("skipped_serial_keys", String())
            ),
            or_(job.mailbox.is_(None), job.mailbox != skipped("skipped_mailboxes", String())),
        )
        lease = (
            update(_job)
            .values(
                state=RUNNING,
                attempts=job.attempts + 1,
                worker_id=bindparam("worker_id"),
                lease_expires_at=bindparam("lease_until", type_=UTCDateTime()),
                started_at=now,
                finished_at=None,
            )
            .returning(
                job.id,
                job.kind,
                job.args,
                job.attempts,
                job.max_attempts,
                job.dedupe_key,
                job.serial_key,
                job.mailbox,
                job.worker_id,
                job.lease_expires_at,
            )
        )
        # PostgreSQL: the candidate, if it is still claimable, in a snapshot taken after the
        # claimer's locks (READ COMMITTED: a statement's own), so it sees every claim committed
        # before them.
        # One row to check: its own mailbox's count is the cheaper way.
        self.lease_if_claimable = lease.where(job.id == bindparam("job_id"), claimable(counted))
        # SQLite: the candidate query as the UPDATE's subquery (its own FROM job, uncorrelated).
        self.lease_next = lease.where(
            job.id == first(counted).with_only_columns(job.id).correlate(None).scalar_subquery(),
            _in_state(job.state, PENDING),
        )
        # PostgreSQL: the candidate row stays locked (and skipped by other claimers) until commit.
        self.candidate = self.candidate.with_for_update(of=_job, skip_locked=True)
        # A candidate's two locks in one statement (`_try_locks`): its serial key's, then, if
        # that one was free, its mailbox's; true, false (the mailbox's is held elsewhere) or null
        # (the serial key's is). CASE runs its branches in order and only the one chosen.
        self.try_locks = select(
            case((_try_lock("serial_lock"), _try_lock("mailbox_lock")), else_=null())
        )


def _try_lock(name: str) -> ColumnElement[bool]:
    """PostgreSQL: true if this transaction holds (or now takes) the lock named by the parameter
    `name`, and with no name (null) nothing to lock. Advisory locks are per database, the queue
    per schema: the schema is part of the key."""
    key = bindparam(name, type_=String())
    lock = func.pg_try_advisory_xact_lock(
        func.hashtextextended(func.concat(func.current_schema(), ":", key), 0)
    )
    return case((key.is_(None), true()), else_=lock)


_CLAIM = _ClaimStatements()


def _lock_key(namespace: str, key: str | None) -> str | None:
    return None if key is None else f"calbridge.{namespace}:{key}"


class JobManager:
    """The worker's queue operations, each in one short transaction of its own."""

    def __init__(
        self,
        database: Database,
        *,
        lease_seconds: float,
        mailbox_concurrency: int,
        max_attempts: int,
    ) -> None:
        self.database = database
        self.lease = timedelta(seconds=lease_seconds)
        self.mailbox_concurrency = mailbox_concurrency
        self.max_attempts = max_attempts

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> JobManager:
        return cls(
            database,
            lease_seconds=settings.worker.lease_seconds,
            mailbox_concurrency=settings.worker.mailbox_concurrency,
            max_attempts=settings.worker.max_attempts,
        )

    # claiming

    async def claim(
        self, *, worker_id: str, kinds: Iterable[str], now: datetime
    ) -> ClaimedJob | None:
        """Take the next claimable job (by run_at, then id) and lease it to `worker_id`."""
        claimed = await self.claim_many(worker_id=worker_id, kinds=kinds, now=now, limit=1)
        return claimed[0] if claimed else None

    async def claim_many(
        self, *, worker_id: str, kinds: Iterable[str], now: datetime, limit: int
    ) -> list[ClaimedJob]:
        """Take up to `limit` claimable jobs (by run_at, then id) in one transaction and lease
        them to `worker_id`; each pick sees the ones before it (serial keys, mailbox limits)."""
        kinds = list(kinds)
        if not kinds or limit < 1:
            return []
        params: dict[str, Any] = {
            "now": now,
            "kinds": kinds,
            "mailbox_limit": self.mailbox_concurrency,
            "worker_id": worker_id,
            "skipped": [],
            "skipped_serial_keys": [],
            "skipped_mailboxes": [],
        }
        if self.database.is_sqlite:
            # Transactions are serialized (BEGIN IMMEDIATE): each pick and its lease are one
            # statement, the batch one unit of work on the driver.
            leased = {**params, "lease_until": now + self.lease}

            def lease_next(db: Statements) -> list[ClaimedJob]:
                claimed: list[ClaimedJob] = []
                while len(claimed) < limit:
                    rows = db.execute(_CLAIM.lease_next, leased)
                    if not rows:
                        break
                    claimed.append(self._claimed(rows[0]))
                return claimed

            return await self.database.run_unit(lease_next)

        def claim_in_turn(db: Statements) -> list[ClaimedJob]:
            claimed: list[ClaimedJob] = []
            while len(claimed) < limit:
                job = self._claim_postgres(db, params)
                if job is None:
                    break
                claimed.append(job)
            return claimed

        return await self.database.run_unit(claim_in_turn)

    def _claim_postgres(self, db: Statements, params: dict[str, Any]) -> ClaimedJob | None:
        for _ in range(_MAX_CLAIM_CANDIDATES):
            candidates = db.execute(_CLAIM.candidate, params)
            if not candidates:
                return None
            # Claimers run side by side here: two could each count three running jobs of a
            # mailbox and both start a fourth. A transaction-scoped lock per serial key and
            # mailbox makes them take turns, and the lease checks the candidate again in a fresh
            # snapshot, taken after the lock, which sees every claim committed before it. A key
            # locked by another claimer is skipped for the rest of this claim, so a busy mailbox
            # does not hide the jobs queued behind it. Locks this transaction already holds are
            # taken again at once.
            candidate = candidates[0]
            serial_key, mailbox = candidate.serial_key, candidate.mailbox
            keys = {
                "serial_lock": _lock_key("serial", serial_key),
                "mailbox_lock": _lock_key("mailbox", mailbox),
            }
            [(locked,)] = db.execute(_CLAIM.try_locks, keys)
            if locked is None:
                params["skipped_serial_keys"] = [*params["skipped_serial_keys"], serial_key]
                continue
            if not locked:
                params["skipped_mailboxes"] = [*params["skipped_mailboxes"], mailbox]
                continue
            leased = db.execute(
                _CLAIM.lease_if_claimable,
                {**params, "job_id": candidate.id, "lease_until": params["now"] + self.lease},
            )
            if leased:
                return self._claimed(leased[0])
            params["skipped"] = [*params["skipped"], candidate.id]
        return None

    def _claimed(self, row: Any) -> ClaimedJob:
        return ClaimedJob(
            id=row.id,
            kind=row.kind,
            args=row.args,
            attempts=row.attempts,
            max_attempts=row.max_attempts or self.max_attempts,
            dedupe_key=row.dedupe_key,
            serial_key=row.serial_key,
            mailbox=row.mailbox,
            worker_id=row.worker_id,
            lease_expires_at=row.lease_expires_at,
        )

    # leases

    async def heartbeat(
        self, jobs: Iterable[ClaimedJob], *, worker_id: str, now: datetime
    ) -> set[tuple[int, int]]:
        """Extend the leases of the runs this worker still holds; those runs, as (job id,
        attempt). A run is lost once its lease lapsed and the job was recovered, even if this
        same worker claimed it again (a new attempt)."""
        ids = list({job.id for job in jobs})
        if not ids:
            return set()
        statement = (
            _update()
            .where(Job.id.in_(ids), _in_state(Job.state, RUNNING), Job.worker_id == worker_id)
            .values(lease_expires_at=now + self.lease)
            .returning(Job.id, Job.attempts)
        )
        async with self.database.session_scope() as session:
            return {(row.id, row.attempts) for row in await session.execute(statement)}

    async def recover_stalled(
        self, *, now: datetime, periodic: Mapping[str, float] | None = None, limit: int = 100
    ) -> StalledJobs:
        """Running jobs whose lease lapsed (their worker died): back to pending, or `dead` when
        they had their last attempt. A periodic kind (kind → interval) gets its next tick."""
        periodic = periodic or {}
        requeued: list[int] = []
        dead: list[int] = []
        query = (
            select(Job.id, Job.kind, Job.dedupe_key, Job.attempts, Job.max_attempts, Job.worker_id)
            .where(Job.state == RUNNING, Job.lease_expires_at < now)
            .order_by(Job.id)
            .limit(limit)
        )
        async with self.database.session_scope() as session:
            if not self.database.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            for row in (await session.execute(query)).all():
                limit_ = row.max_attempts or self.max_attempts
                lapse = (
                    f"lease expired: worker {row.worker_id} stopped during attempt {row.attempts}"
                )
                if row.attempts >= limit_:
                    await session.execute(
                        _update()
                        .where(Job.id == row.id)
                        .values(
                            state=DEAD,
                            finished_at=now,
                            lease_expires_at=None,
                            last_error=error_text(f"{lapse} of {limit_}; no attempts left"),
                        )
                    )
                    dead.append(row.id)
                    if row.kind in periodic:
                        await schedule_tick(session, row.kind, periodic[row.kind], now=now)
                    continue
                await _return_to_pending(
                    session,
                    job_id=row.id,
                    dedupe_key=row.dedupe_key,
                    run_at=now,
                    now=now,
                    values={"last_error": error_text(lapse)},
                )
                requeued.append(row.id)
        return StalledJobs(requeued=requeued, dead=dead)

    # outcomes: each applies only while the worker still holds this run of the job

    @staticmethod
    def _held(job: ClaimedJob) -> ColumnElement[bool]:
        return and_(
            Job.id == job.id,
            _in_state(Job.state, RUNNING),
            Job.worker_id == job.worker_id,
            Job.attempts == job.attempts,
        )

    @staticmethod
    def _finish_params(
        job: ClaimedJob, *, state: str, now: datetime, error: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "w_id": job.id,
            "w_worker_id": job.worker_id,
            "w_attempts": job.attempts,
            "v_state": state,
            "v_now": now,
        }
        if error is not None:
            params["v_error"] = error
        return params

    async def _finish(
        self,
        job: ClaimedJob,
        *,
        state: str,
        now: datetime,
        error: str | None,
        every_seconds: float | None,
    ) -> bool:
        params = self._finish_params(job, state=state, now=now, error=error)
        statement = _finish_statement(error is not None)
        if every_seconds is None:  # the common case: one statement, as a unit on the driver
            return bool(await self.database.run_unit(lambda db: db.execute(statement, params)))
        async with self.database.session_scope() as session:
            if (await session.execute(statement, params)).scalar_one_or_none() is None:
                return False
            if every_seconds is not None:
                await schedule_tick(session, job.kind, every_seconds, now=now)
            return True

    def complete_in(self, db: Statements, job: ClaimedJob, *, now: datetime) -> bool:
        """`complete` (of a job that is not periodic) as a statement of the caller's unit of
        work. False when the worker no longer held the job."""
        params = self._finish_params(job, state=DONE, now=now, error=None)
        return bool(db.execute(_finish_statement(False), params))

    async def complete(
        self, job: ClaimedJob, *, now: datetime, every_seconds: float | None = None
    ) -> bool:
        """The job succeeded: `done`. A periodic job schedules its next tick in the same
        transaction. False when the worker no longer held the job (its lease was lost)."""
        return await self._finish(job, state=DONE, now=now, error=None, every_seconds=every_seconds)

    async def fail(
        self,
        job: ClaimedJob,
        *,
        error: BaseException | str,
        now: datetime,
        every_seconds: float | None = None,
    ) -> bool:
        """A permanent error: `failed`, never retried automatically."""
        return await self._finish(
            job, state=FAILED, now=now, error=error_text(error), every_seconds=every_seconds
        )

    async def mark_dead(
        self,
        job: ClaimedJob,
        *,
        error: BaseException | str,
        now: datetime,
        every_seconds: float | None = None,
    ) -> bool:
        """A retryable error on the last attempt: `dead`."""
        return await self._finish(
            job, state=DEAD, now=now, error=error_text(error), every_seconds=every_seconds
        )

    async def retry(
        self,
        job: ClaimedJob,
        *,
        run_at: datetime,
        error: BaseException | str,
        now: datetime,
        throttle_until: datetime | None = None,
    ) -> bool:
        """Back to pending at `run_at`; with `throttle_until`, the job's mailbox waits as well."""
        async with self.database.session_scope() as session:
            if not await self._hold(session, job):
                return False
            if throttle_until is not None and job.mailbox is not None:
                await throttle_mailbox(session, job.mailbox, throttle_until)
            await _return_to_pending(
                session,
                job_id=job.id,
                dedupe_key=job.dedupe_key,
                run_at=run_at,
                now=now,
                values={"last_error": error_text(error)},
            )
            return True

    async def release(self, job: ClaimedJob, *, now: datetime) -> bool:
        """Give a job back unfinished (worker shutdown): pending, due now, this attempt not
        counted."""
        async with self.database.session_scope() as session:
            if not await self._hold(session, job):
                return False
            await _return_to_pending(
                session,
                job_id=job.id,
                dedupe_key=job.dedupe_key,
                run_at=now,
                now=now,
                values={"attempts": Job.attempts - 1},
            )
            return True

    async def _hold(self, session: AsyncSession, job: ClaimedJob) -> bool:
        # Row lock first, then (maybe) the twin's: always this order, so no deadlock.
        query = select(Job.id).where(self._held(job)).with_for_update()
        return (await session.execute(query)).scalar_one_or_none() is not None

    async def ensure_periodic(
        self, kind: str, every_seconds: float, *, now: datetime
    ) -> int | None:
        """At worker start: the next tick of a periodic kind, unless its chain is alive."""
        async with self.database.session_scope() as session:
            return await schedule_tick(session, kind, every_seconds, now=now, only_if_idle=True)
