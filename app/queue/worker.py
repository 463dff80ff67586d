"""The worker loop: claims jobs, runs their handlers concurrently, heartbeats their leases,
records outcomes, recovers stalled jobs, keeps periodic jobs scheduled, shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

from app import counters, logs
from app.config import Settings
from app.db import Database
from app.models.base import utcnow
from app.queue.manager import JobManager
from app.queue.registry import JobContext, JobRegistry
from app.queue.retry import Decision, RetryStrategy
from app.queue.runs import ClaimedJob
from app.queue.wakeups import JobListener

log = logging.getLogger(__name__)

# Jobs one claim takes at most (one transaction): a burst is claimed in a few transactions, and
# the jobs a claim takes start at once, so no worker holds more than it can run.
_CLAIM_BATCH = 16
# Pauses before a failed outcome write is tried again (then the lease decides).
_RECORD_RETRY_PAUSES = (0.5, 2.0, 5.0)


def default_worker_id() -> str:
    """host:pid:random, unique per Worker even within one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs the jobs of `registry` from the database queue until `stop()`.

    Each job: claimed in one short transaction, its handler run outside any transaction,
    its outcome recorded in one short transaction. Up to `settings.worker.concurrency` jobs
    run at once as asyncio tasks.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        registry: JobRegistry,
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        retry_strategy: RetryStrategy | None = None,
        manager: JobManager | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.registry = registry
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.retry_strategy = retry_strategy or RetryStrategy.from_settings(settings.worker)
        self.manager = manager or JobManager.from_settings(database, settings)
        self._in_flight: dict[asyncio.Task[None], ClaimedJob] = {}
        # Runs (job id, attempt) whose handler has ended and whose outcome is being recorded:
        # never cancelled.
        self._finishing: set[tuple[int, int]] = set()
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._periodic = {k.kind: k.every_seconds for k in registry.periodic if k.every_seconds}
        # PostgreSQL: jobs other processes queue wake the claim loop (app/queue/wakeups.py).
        self.listener = (
            None
            if database.is_sqlite
            else JobListener(database, self.wake, name=f"calbridge-worker:{self.worker_id}")
        )

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming; in-flight jobs get `shutdown_grace_seconds` to finish, then are
        cancelled and released back to pending."""
        self._stopping.set()
        self._wakeup.set()

    def wake(self) -> None:
        """Claim now rather than after the idle poll (e.g. right after enqueueing)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Work until `stop()`; if this task is cancelled instead, in-flight jobs are released."""
        log.info("worker %s starting: kinds %s", self.worker_id, ", ".join(self.registry.kinds))
        upkeep = asyncio.create_task(self._upkeep_loop(), name=f"worker-upkeep:{self.worker_id}")
        background = [upkeep]
        if self.listener is not None:
            background.append(
                asyncio.create_task(self.listener.run(), name=f"worker-listener:{self.worker_id}")
            )
        graceful = False
        try:
            await self._schedule_periodic()
            await self._claim_loop()
            graceful = True
        finally:
            await self._shutdown(graceful=graceful)
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            log.info("worker %s stopped", self.worker_id)

    # the loops

    async def _claim_loop(self) -> None:
        concurrency = self.settings.worker.concurrency
        kinds = self.registry.kinds
        while not self._stopping.is_set():
            if len(self._in_flight) >= concurrency:
                self._wakeup.clear()
                await self._wakeup.wait()  # set when a job ends or on stop()
                continue
            # Cleared before claiming, so a wake() during the claim is not lost.
            self._wakeup.clear()
            limit = min(concurrency - len(self._in_flight), _CLAIM_BATCH)
            try:
                jobs = await self.manager.claim_many(
                    worker_id=self.worker_id, kinds=kinds, now=self.clock(), limit=limit
                )
            except Exception:
                log.exception("worker %s: claiming failed; retrying", self.worker_id)
                jobs = []
            for job in jobs:
                self._start(job)
            if len(jobs) == limit:
                continue
            # Fewer than asked: nothing else was claimable, and a claim that finds nothing is
            # the dearest (it passes every waiting job). A job ending here, one enqueued in
            # this process, or on PostgreSQL one queued by any process (`listener`) wakes the
            # loop; the poll finds the rest (a job whose retry time comes, say).
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 a wake landing in the same turn of
            # the loop as the task's cancel made `wait_for` return and drop the cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.worker.poll_seconds):
                    await self._wakeup.wait()

    async def _upkeep_loop(self) -> None:
        """Heartbeat our leases; requeue jobs whose worker died. Every heartbeat interval."""
        interval = self.settings.worker.heartbeat_interval
        while True:
            try:
                await self._recover_stalled()
                await asyncio.sleep(interval)
                await self._heartbeat()
            except Exception:
                log.exception("worker %s: lease upkeep failed; retrying", self.worker_id)
                await asyncio.sleep(interval)

    async def _heartbeat(self) -> None:
        runs = dict(self._in_flight)
        if not runs:
            return
        kept = await self.manager.heartbeat(
            runs.values(), worker_id=self.worker_id, now=self.clock()
        )
        for task, job in runs.items():
            run = (job.id, job.attempts)
            if run in kept or run in self._finishing or task.done():
                continue
            # The lease lapsed (a stalled loop, a lost database) and the job was recovered: its
            # next run may already be going, here or in another worker. Two runs of one job
            # would race each other's Graph writes, so this one stops as if its worker had
            # died; its outcome would not be recorded anyway.
            log.warning(
                "worker %s lost the lease of job %s (attempt %s); stopping that run",
                self.worker_id,
                job.id,
                job.attempts,
            )
            task.cancel()

    async def _recover_stalled(self) -> None:
        stalled = await self.manager.recover_stalled(now=self.clock(), periodic=self._periodic)
        for job_id in stalled.requeued:
            log.warning("job %s: lease expired, back to pending", job_id)
        for job_id in stalled.dead:
            log.error("job %s: lease expired on its last attempt, dead", job_id)
        if stalled.requeued or stalled.dead:
            self._wakeup.set()

    async def _schedule_periodic(self) -> None:
        for kind, every in self._periodic.items():
            try:
                job_id = await self.manager.ensure_periodic(kind, every, now=self.clock())
            except Exception:
                log.exception("worker %s: scheduling periodic %s failed", self.worker_id, kind)
                continue
            if job_id is not None:
                log.info("periodic %s: next tick is job %s", kind, job_id)

    # one job

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"job:{job.id}:{job.kind}")
        self._in_flight[task] = job
        task.add_done_callback(self._job_ended)

    def _job_ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wakeup.set()  # a slot is free; a serial successor may be claimable now

    async def _run_job(self, job: ClaimedJob) -> None:
        kind = self.registry.get(job.kind)
        assert kind is not None  # only registered kinds are claimed
        context = JobContext(
            job_id=job.id,
            kind=job.kind,
            args=job.args,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            mailbox=job.mailbox,
            serial_key=job.serial_key,
            dedupe_key=job.dedupe_key,
            database=self.database,
            settings=self.settings,
            worker_id=self.worker_id,
            clock=self.clock,
        )
        # This task's own context: its log lines carry the job, never what spawned the task.
        logs.bind_job(job_id=job.id, job_kind=job.kind, mailbox=job.mailbox)
        log.debug("job %s %s: attempt %s started", job.id, job.kind, job.attempts)
        await self._run_handler(job, kind.handler(context), kind.every_seconds)

    async def _run_handler(
        self, job: ClaimedJob, handler: Awaitable[None], every: float | None
    ) -> None:
        # CancelledError (shutdown) passes through: `_shutdown` releases the job.
        try:
            await counters.timed_job(
                handler,
                kind=job.kind,
                last_attempt=job.attempts >= job.max_attempts,
            )
        except Exception as exc:
            now = self.clock()
            decision = self.retry_strategy.decide(
                exc, attempt=job.attempts, max_attempts=job.max_attempts, now=now
            )
            await self._apply(job, exc, decision, every, now=now)
        else:
            # Success is in the job row, the sync history and calbridge_jobs_total; a line per
            # job would flood the log at hundreds of jobs a second.
            log.debug("job %s %s: done", job.id, job.kind)
            await self._record(
                job, partial(self.manager.complete, job, now=self.clock(), every_seconds=every)
            )

    async def _apply(
        self,
        job: ClaimedJob,
        exc: Exception,
        decision: Decision,
        every: float | None,
        *,
        now: datetime,
    ) -> None:
        """Record the retry decision (app/queue/retry.py) made for a run that raised `exc`."""
        # The class alone ("HTTPStatusError") does not tell an operator what went wrong; the whole
        # message can be a response body. Its start, on one line and redacted, does.
        reason = logs.short_reason(exc)
        if decision.outcome == "failed":
            log.warning("job %s %s failed permanently: %s", job.id, job.kind, reason)
            outcome = partial(self.manager.fail, job, error=exc, now=now, every_seconds=every)
        elif decision.outcome == "dead":
            log.error(
                "job %s %s: attempt %s of %s failed (%s), dead",
                job.id,
                job.kind,
                job.attempts,
                job.max_attempts,
                reason,
            )
            outcome = partial(self.manager.mark_dead, job, error=exc, now=now, every_seconds=every)
        else:
            assert decision.run_at is not None
            throttle = decision.throttle_until
            log.warning(
                "job %s %s: attempt %s failed (%s), retry at %s%s",
                job.id,
                job.kind,
                job.attempts,
                reason,
                decision.run_at.isoformat(),
                ", mailbox throttled" if throttle and job.mailbox else "",
            )
            outcome = partial(
                self.manager.retry,
                job,
                run_at=decision.run_at,
                error=exc,
                now=now,
                throttle_until=throttle,
            )
        await self._record(job, outcome)

    async def _record(self, job: ClaimedJob, outcome: Callable[[], Awaitable[bool]]) -> None:
        """Write the run's outcome; a failed write (the database briefly unreachable, its
        connections all taken) is tried again after a pause, while the heartbeat keeps the
        lease. If every try fails, the job stays running until its lease lapses and is then
        run again."""
        run = (job.id, job.attempts)
        self._finishing.add(run)
        try:
            for pause in (*_RECORD_RETRY_PAUSES, None):
                try:
                    recorded = await outcome()
                    break
                except Exception:
                    if pause is None:
                        log.exception("job %s %s: recording the outcome failed", job.id, job.kind)
                        return
                    log.warning(
                        "job %s %s: recording the outcome failed; trying again in %gs",
                        job.id,
                        job.kind,
                        pause,
                        exc_info=True,
                    )
                    await asyncio.sleep(pause)
        finally:
            self._finishing.discard(run)
        if not recorded:
            log.warning("job %s %s: outcome dropped, the lease was lost", job.id, job.kind)

    # shutdown

    async def _shutdown(self, *, graceful: bool) -> None:
        jobs = dict(self._in_flight)
        if not jobs:
            return
        grace = self.settings.worker.shutdown_grace_seconds
        if graceful and grace > 0:
            log.info("worker %s: waiting up to %gs for %d jobs", self.worker_id, grace, len(jobs))
            await asyncio.wait(list(jobs), timeout=grace)
        unfinished = [task for task in jobs if not task.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for task in unfinished:
            job = jobs[task]
            try:
                # A no-op if the job recorded its outcome before the cancellation reached it.
                if await self.manager.release(job, now=self.clock()):
                    log.info("job %s %s: released at shutdown", job.id, job.kind)
            except Exception:
                log.exception("job %s %s: release failed; its lease will lapse", job.id, job.kind)


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM and SIGINT stop the worker gracefully (call from inside the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
