"""The SQL of a claimed job's run: its lease, its outcome, and the recovery of runs whose worker
stopped. Every function runs in the caller's session and transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.base import UTCDateTime
from app.queue.repository import DEAD, DONE, PENDING, RUNNING, error_text, job_table, pending_twin

jobs = job_table.c


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


def held(job: ClaimedJob) -> ColumnElement[bool]:
    """The job is still this run's: running, leased to its worker, at its attempt. A run whose
    lease lapsed and whose job was recovered (and maybe claimed again) matches no longer."""
    return and_(
        jobs.id == job.id,
        jobs.state == RUNNING,
        jobs.worker_id == job.worker_id,
        jobs.attempts == job.attempts,
    )


def _finish_statement(*, with_error: bool) -> Any:
    """The UPDATE ending a run (`held`, with bind parameters): every job runs one, so it is
    built once."""
    values: dict[str, Any] = {
        "state": bindparam("v_state"),
        "finished_at": bindparam("v_finished_at", type_=jobs.finished_at.type),
        "lease_expires_at": None,
    }
    if with_error:
        values["last_error"] = bindparam("v_error")
    return (
        update(job_table)
        .where(
            jobs.id == bindparam("w_id"),
            jobs.state == RUNNING,
            jobs.worker_id == bindparam("w_worker_id"),
            jobs.attempts == bindparam("w_attempts"),
        )
        .values(values)
        .returning(jobs.id)
    )


_FINISH = _finish_statement(with_error=False)
_FINISH_WITH_ERROR = _finish_statement(with_error=True)


async def finish(
    session: AsyncSession, job: ClaimedJob, *, state: str, now: datetime, error: str | None = None
) -> bool:
    """End a run the worker still holds in `state` (done, failed, dead); False when it no
    longer held it."""
    statement = _FINISH if error is None else _FINISH_WITH_ERROR
    values = {
        "w_id": job.id,
        "w_worker_id": job.worker_id,
        "w_attempts": job.attempts,
        "v_state": state,
        "v_finished_at": now,
        "v_error": error,
    }
    return (await session.execute(statement, values)).scalar_one_or_none() is not None


async def hold(session: AsyncSession, job: ClaimedJob) -> bool:
    """Lock the job's row if this run still holds it; False when it does not."""
    # Row lock first, then (maybe) the twin's: always this order, so no deadlock.
    query = select(jobs.id).where(held(job)).with_for_update()
    return (await session.execute(query)).scalar_one_or_none() is not None


async def return_to_pending(
    session: AsyncSession,
    *,
    job_id: int,
    dedupe_key: str | None,
    run_at: datetime,
    now: datetime,
    error: str | None = None,
    count_attempt: bool = True,
) -> int | None:
    """Put a running job back to pending at `run_at`, with `error` as its last error and its
    attempt not counted unless `count_attempt`; None, or the twin that superseded it.

    One pending job per dedupe key: when a pending twin exists, this job ends `done` (its work
    is the twin's now) and the twin waits until `run_at` too, as this job would have.
    """
    values: dict[str, Any] = {"last_error": error} if error is not None else {}
    if not count_attempt:
        values["attempts"] = jobs.attempts - 1
    for _ in range(3):
        twin = await pending_twin(session, dedupe_key) if dedupe_key is not None else None
        if twin is not None:
            later = literal(run_at, UTCDateTime())
            await session.execute(
                update(job_table)
                .where(jobs.id == twin)
                .values(run_at=case((jobs.run_at < later, later), else_=jobs.run_at))
            )
            note = f"superseded by job {twin}" + (f" after {error}" if error else "")
            await session.execute(
                update(job_table)
                .where(jobs.id == job_id)
                .values(
                    state=DONE, finished_at=now, lease_expires_at=None, last_error=error_text(note)
                )
            )
            return twin
        statement = (
            update(job_table)
            .where(jobs.id == job_id)
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


async def extend_leases(
    session: AsyncSession, job_ids: Sequence[int], *, worker_id: str, until: datetime
) -> set[tuple[int, int]]:
    """Lease the given running jobs of `worker_id` until `until`; the (id, attempt) of each."""
    statement = (
        update(job_table)
        .where(
            jobs.id.in_(job_ids),
            jobs.state == RUNNING,
            jobs.worker_id == worker_id,
        )
        .values(lease_expires_at=until)
        .returning(jobs.id, jobs.attempts)
    )
    return {(row.id, row.attempts) for row in await session.execute(statement)}


async def end_stalled(session: AsyncSession, job_id: int, *, now: datetime, error: str) -> None:
    """A job whose lease lapsed on its last attempt: `dead`."""
    await session.execute(
        update(job_table)
        .where(jobs.id == job_id)
        .values(state=DEAD, finished_at=now, lease_expires_at=None, last_error=error)
    )


async def lapsed_leases(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[Any]:
    """Running jobs whose lease lapsed before `now`, locked; other recoverers skip them."""
    query = (
        select(
            jobs.id,
            jobs.kind,
            jobs.dedupe_key,
            jobs.attempts,
            jobs.max_attempts,
            jobs.worker_id,
        )
        .where(jobs.state == RUNNING, jobs.lease_expires_at < now)
        .order_by(jobs.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).all()
