"""The claim: which pending job a worker takes next, and its lease, on each engine.

A job is claimable when it is pending and due, of a kind the worker runs, its serial key has no
running job and no earlier pending one, and its mailbox is neither throttled nor at its limit of
running jobs. Claims take jobs by run_at, then id; each pick of a batch sees the ones before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.base import UTCDateTime
from app.queue.repository import PENDING, RUNNING, job_table, mailbox_table
from app.queue.runs import ClaimedJob

# Candidates a PostgreSQL claim inspects per job before giving up for this round; a candidate is
# skipped when another claimer holds its serial-key or mailbox lock at that very moment.
_MAX_CANDIDATES = 10


@dataclass(frozen=True)
class ClaimRequest:
    """What one claim asks for, and the limits every pick keeps."""

    worker_id: str
    kinds: Sequence[str]
    now: datetime
    lease_until: datetime
    mailbox_limit: int
    max_attempts: int  # for jobs without a limit of their own

    def parameters(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "kinds": list(self.kinds),
            "now": self.now,
            "lease_until": self.lease_until,
            "mailbox_limit": self.mailbox_limit,
        }


async def claim_jobs(session: AsyncSession, request: ClaimRequest, limit: int) -> list[ClaimedJob]:
    """Lease up to `limit` claimable jobs in the session's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        return await _claim_postgres(session, request, limit)
    return await _claim_sqlite(session, request, limit)


# The statements are built once, with parameters named after ClaimRequest's fields: composing
# them takes longer than running them, and a claim runs whenever a job ends.
jobs = job_table.c
mailboxes = mailbox_table.c
_now = bindparam("now", type_=UTCDateTime())
_running = job_table.alias("running_job").c
_earlier = job_table.alias("earlier_job").c

# No running job has the job's serial key, and no earlier pending one (enqueue order).
_serial_key_free = or_(
    jobs.serial_key.is_(None),
    and_(
        ~exists().where(_running.serial_key == jobs.serial_key, _running.state == RUNNING),
        ~exists().where(
            _earlier.serial_key == jobs.serial_key,
            _earlier.state == PENDING,
            _earlier.id < jobs.id,
        ),
    ),
)

# Two ways to check a job's mailbox, each the cheaper on its engine: SQLite counts the running
# jobs of each candidate's mailbox, PostgreSQL finds the full and throttled mailboxes once.
# A job's mailbox takes it, counted for that mailbox: also the cheaper for one row.
_mailbox_counted = or_(
    jobs.mailbox.is_(None),
    and_(
        ~exists().where(mailboxes.address == jobs.mailbox, mailboxes.throttled_until > _now),
        select(func.count())
        .where(_running.mailbox == jobs.mailbox, _running.state == RUNNING)
        .scalar_subquery()
        < bindparam("mailbox_limit"),
    ),
)

# A job's mailbox takes it, the full and throttled mailboxes found once per statement: stays
# cheap when many jobs of a full mailbox wait ahead of the first that can run.
_full_mailboxes = (
    select(_running.mailbox)
    .where(_running.mailbox.is_not(None), _running.state == RUNNING)
    .group_by(_running.mailbox)
    .having(func.count() >= bindparam("mailbox_limit"))
)
_throttled_mailboxes = select(mailboxes.address).where(mailboxes.throttled_until > _now)
_mailbox_listed = or_(
    jobs.mailbox.is_(None),
    jobs.mailbox.not_in(union(_full_mailboxes, _throttled_mailboxes)),
)


def _claimable(mailbox_free: ColumnElement[bool]) -> ColumnElement[bool]:
    return and_(
        jobs.state == PENDING,
        jobs.run_at <= _now,
        jobs.kind.in_(bindparam("kinds", expanding=True)),
        mailbox_free,  # before the serial key's checks, which look up other jobs per candidate
        _serial_key_free,
    )


def _first(mailbox_free: ColumnElement[bool]) -> Select[int, str | None, str | None]:
    return (
        select(jobs.id, jobs.serial_key, jobs.mailbox)
        .where(_claimable(mailbox_free))
        .order_by(jobs.run_at, jobs.id)
        .limit(1)
    )


_lease = (
    update(job_table)
    .values(
        state=RUNNING,
        attempts=jobs.attempts + 1,
        worker_id=bindparam("worker_id"),
        lease_expires_at=bindparam("lease_until", type_=UTCDateTime()),
        started_at=_now,
        finished_at=None,
    )
    .returning(
        jobs.id,
        jobs.kind,
        jobs.args,
        jobs.attempts,
        jobs.max_attempts,
        jobs.dedupe_key,
        jobs.serial_key,
        jobs.mailbox,
        jobs.worker_id,
        jobs.lease_expires_at,
    )
)


def _claimed(row: Any, request: ClaimRequest) -> ClaimedJob:
    return ClaimedJob(
        id=row.id,
        kind=row.kind,
        args=row.args,
        attempts=row.attempts,
        max_attempts=row.max_attempts or request.max_attempts,
        dedupe_key=row.dedupe_key,
        serial_key=row.serial_key,
        mailbox=row.mailbox,
        worker_id=row.worker_id,
        lease_expires_at=row.lease_expires_at,
    )


# --- SQLite --------------------------------------------------------------------------------

# SQLite's transactions take turns (BEGIN IMMEDIATE), so nothing changes between a pick and its
# lease: one statement does both, the pick as the UPDATE's own uncorrelated subquery.
_SQLITE_CLAIM = _lease.where(
    jobs.id
    == _first(_mailbox_counted).with_only_columns(jobs.id).correlate(None).scalar_subquery(),
    jobs.state == PENDING,
)


async def _claim_sqlite(
    session: AsyncSession, request: ClaimRequest, limit: int
) -> list[ClaimedJob]:
    parameters = request.parameters()
    claimed: list[ClaimedJob] = []
    while len(claimed) < limit:
        row = (await session.execute(_SQLITE_CLAIM, parameters)).one_or_none()
        if row is None:
            break
        claimed.append(_claimed(row, request))
    return claimed


# --- PostgreSQL ----------------------------------------------------------------------------

# The first claimable job, its row locked until commit and passed over by other claimers
# meanwhile (SKIP LOCKED), and none of those this claim passed over already.
_PG_CANDIDATE = (
    _first(_mailbox_listed)
    .where(
        jobs.id.not_in(bindparam("skipped_ids", expanding=True)),
        or_(
            jobs.serial_key.is_(None),
            jobs.serial_key.not_in(bindparam("skipped_serial_keys", expanding=True)),
        ),
        or_(
            jobs.mailbox.is_(None),
            jobs.mailbox.not_in(bindparam("skipped_mailboxes", expanding=True)),
        ),
    )
    .with_for_update(of=job_table, skip_locked=True)
)
# The candidate, if it is still claimable in the statement's own snapshot.
_PG_LEASE = _lease.where(jobs.id == bindparam("job_id"), _claimable(_mailbox_counted))

_lock_key = bindparam("lock_key", type_=String())
# Advisory locks are per database, the queue per schema: the schema is part of the lock's key.
_PG_TRY_LOCK = select(
    func.pg_try_advisory_xact_lock(
        func.hashtextextended(func.concat(func.current_schema(), ":", _lock_key), 0)
    )
)


async def _claim_postgres(
    session: AsyncSession, request: ClaimRequest, limit: int
) -> list[ClaimedJob]:
    # The lists name what this claim passes over for the rest of its batch.
    parameters = {
        **request.parameters(),
        "skipped_ids": [],
        "skipped_serial_keys": [],
        "skipped_mailboxes": [],
    }
    claimed: list[ClaimedJob] = []
    while len(claimed) < limit:
        row = await _claim_one_postgres(session, parameters)
        if row is None:
            break
        claimed.append(_claimed(row, request))
    return claimed


async def _claim_one_postgres(session: AsyncSession, parameters: dict[str, Any]) -> Any:
    # Claimers run side by side here: two could each count three running jobs of a mailbox and
    # both start a fourth. A transaction-scoped lock per serial key and mailbox makes them take
    # turns, and the lease checks the candidate again in a fresh snapshot (READ COMMITTED: the
    # statement's own), taken after the locks, which sees every claim committed before them. A
    # key locked by another claimer is passed over for the rest of this claim, so a busy
    # mailbox does not hide the jobs queued behind it. Locks this transaction holds already are
    # taken again at once.
    for _ in range(_MAX_CANDIDATES):
        candidate = (await session.execute(_PG_CANDIDATE, parameters)).one_or_none()
        if candidate is None:
            return None
        if not await _try_lock(session, "serial", candidate.serial_key):
            parameters["skipped_serial_keys"].append(candidate.serial_key)
            continue
        if not await _try_lock(session, "mailbox", candidate.mailbox):
            parameters["skipped_mailboxes"].append(candidate.mailbox)
            continue
        row = (
            await session.execute(_PG_LEASE, {**parameters, "job_id": candidate.id})
        ).one_or_none()
        if row is not None:
            return row
        parameters["skipped_ids"].append(candidate.id)
    return None


async def _try_lock(session: AsyncSession, namespace: str, key: str | None) -> bool:
    """Take the transaction-scoped advisory lock of a serial key or mailbox if it is free (no
    key: nothing to lock)."""
    if key is None:
        return True
    return bool(await session.scalar(_PG_TRY_LOCK, {"lock_key": f"calbridge.{namespace}:{key}"}))
