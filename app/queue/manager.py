"""`JobManager`: the worker's queue operations (claim, heartbeat, outcomes, stall recovery,
periodic ticks), each in one short transaction of its own: the SQL is in claim.py, runs.py and
repository.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.config import Settings
from app.db import Database
from app.queue import repository, runs
from app.queue.claim import ClaimRequest, claim_jobs
from app.queue.repository import DEAD, DONE, FAILED, error_text
from app.queue.runs import ClaimedJob


@dataclass(frozen=True)
class StalledJobs:
    """What a stall recovery did: ids put back to pending, and ids that were out of attempts."""

    requeued: list[int]
    dead: list[int]


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
        request = ClaimRequest(
            worker_id=worker_id,
            kinds=kinds,
            now=now,
            lease_until=now + self.lease,
            mailbox_limit=self.mailbox_concurrency,
            max_attempts=self.max_attempts,
        )
        async with self.database.session_scope() as session:
            return await claim_jobs(session, request, limit)

    # leases

    async def heartbeat(
        self, jobs: Iterable[ClaimedJob], *, worker_id: str, now: datetime
    ) -> set[tuple[int, int]]:
        """Extend the leases of the runs this worker still holds; those runs, as (job id,
        attempt). A run is lost once its lease lapsed and the job was recovered, even if this
        same worker claimed it again (a new attempt)."""
        ids = sorted({job.id for job in jobs})
        if not ids:
            return set()
        async with self.database.session_scope() as session:
            return await runs.extend_leases(
                session, ids, worker_id=worker_id, until=now + self.lease
            )

    async def recover_stalled(
        self, *, now: datetime, periodic: Mapping[str, float] | None = None, limit: int = 100
    ) -> StalledJobs:
        """Running jobs whose lease lapsed (their worker died): back to pending, or `dead` when
        they had their last attempt. A periodic kind (kind → interval) gets its next tick."""
        periodic = periodic or {}
        requeued: list[int] = []
        dead: list[int] = []
        async with self.database.session_scope() as session:
            for row in await runs.lapsed_leases(session, now=now, limit=limit):
                attempts = row.max_attempts or self.max_attempts
                lapse = (
                    f"lease expired: worker {row.worker_id} stopped during attempt {row.attempts}"
                )
                if row.attempts < attempts:
                    await runs.return_to_pending(
                        session,
                        job_id=row.id,
                        dedupe_key=row.dedupe_key,
                        run_at=now,
                        now=now,
                        error=error_text(lapse),
                    )
                    requeued.append(row.id)
                    continue
                await runs.end_stalled(
                    session,
                    row.id,
                    now=now,
                    error=error_text(f"{lapse} of {attempts}; no attempts left"),
                )
                dead.append(row.id)
                if row.kind in periodic:
                    await repository.schedule_tick(session, row.kind, periodic[row.kind], now=now)
        return StalledJobs(requeued=requeued, dead=dead)

    # outcomes: each applies only while the worker still holds this run of the job

    async def _finish(
        self,
        job: ClaimedJob,
        *,
        state: str,
        now: datetime,
        error: str | None,
        every_seconds: float | None,
    ) -> bool:
        async with self.database.session_scope() as session:
            if not await runs.finish(session, job, state=state, now=now, error=error):
                return False
            if every_seconds is not None:
                await repository.schedule_tick(session, job.kind, every_seconds, now=now)
            return True

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
            if not await runs.hold(session, job):
                return False
            if throttle_until is not None and job.mailbox is not None:
                await repository.throttle_mailbox(session, job.mailbox, throttle_until)
            await runs.return_to_pending(
                session,
                job_id=job.id,
                dedupe_key=job.dedupe_key,
                run_at=run_at,
                now=now,
                error=error_text(error),
            )
            return True

    async def release(self, job: ClaimedJob, *, now: datetime) -> bool:
        """Give a job back unfinished (worker shutdown): pending, due now, this attempt not
        counted."""
        async with self.database.session_scope() as session:
            if not await runs.hold(session, job):
                return False
            await runs.return_to_pending(
                session,
                job_id=job.id,
                dedupe_key=job.dedupe_key,
                run_at=now,
                now=now,
                count_attempt=False,
            )
            return True

    async def ensure_periodic(
        self, kind: str, every_seconds: float, *, now: datetime
    ) -> int | None:
        """At worker start: the next tick of a periodic kind, unless its chain is alive."""
        async with self.database.session_scope() as session:
            return await repository.schedule_tick(
                session, kind, every_seconds, now=now, only_if_idle=True
            )
