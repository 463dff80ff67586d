"""The Worker against a real database: concurrency, ordering, limits, retries, leases,
periodic jobs and shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from app.config import Settings
from app.db import Database
from app.models import Job, Mailbox
from app.queue.errors import PermanentError, RetryAfter
from app.queue.manager import JobManager
from app.queue.registry import JobContext, JobRegistry
from app.queue.repository import enqueue, next_tick
from app.queue.retry import RetryStrategy
from app.queue.runs import ClaimedJob
from app.queue.worker import Worker, install_signal_handlers
from tests.helpers import eventually
from tests.queue.conftest import (
    Clock,
    all_settled,
    job,
    jobs,
    running,
    with_worker,
)


async def add(database: Database, kind: str = "test.job", **kwargs: object) -> int:
    async with database.session_scope() as session:
        job_id = await enqueue(session, kind, **kwargs)  # type: ignore[arg-type]
    assert job_id is not None
    return job_id


async def test_no_job_runs_twice_with_three_workers(
    databases: Callable[[], Database], database: Database, fast_settings: Settings
) -> None:
    runs: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()

    async def handler(ctx: JobContext) -> None:
        runs[ctx.job_id] += 1
        by_worker[ctx.worker_id] += 1
        await asyncio.sleep(0.001)

    registry = JobRegistry()
    registry.register("test.job", handler)
    async with database.session_scope() as session:
        ids = [await enqueue(session, "test.job", {"n": n}) for n in range(200)]
    workers = [Worker(databases(), fast_settings, registry, worker_id=f"w{i}") for i in range(3)]
    async with running(*workers):
        await eventually(lambda: all_settled(database))
    assert runs == Counter({job_id: 1 for job_id in ids})
    assert {j.state for j in await jobs(database)} == {"done"}
    assert len(by_worker) >= 2, by_worker


async def test_serial_key_runs_in_enqueue_order_never_overlapping(
    databases: Callable[[], Database], database: Database, fast_settings: Settings
) -> None:
    events: list[tuple[str, int]] = []
    active: Counter[str] = Counter()
    overlap: list[int] = []

    async def handler(ctx: JobContext) -> None:
        key = ctx.serial_key or ""
        active[key] += 1
        if active[key] > 1:
            overlap.append(ctx.job_id)
        if key == "s":
            events.append(("start", ctx.job_id))
        await asyncio.sleep(0.002)
        if key == "s":
            events.append(("end", ctx.job_id))
        active[key] -= 1

    registry = JobRegistry()
    registry.register("test.job", handler)
    serial: list[int] = []
    async with database.session_scope() as session:
        for n in range(30):
            key = "s" if n % 2 == 0 else f"other-{n}"
            job_id = await enqueue(session, "test.job", serial_key=key)
            assert job_id is not None
            if key == "s":
                serial.append(job_id)
    workers = [Worker(databases(), fast_settings, registry, worker_id=f"w{i}") for i in range(2)]
    async with running(*workers):
        await eventually(lambda: all_settled(database))
    assert overlap == []
    assert events == [(edge, job_id) for job_id in serial for edge in ("start", "end")]


async def test_mailbox_limit_across_workers(
    databases: Callable[[], Database], database: Database, fast_settings: Settings
) -> None:
    settings = with_worker(fast_settings, mailbox_concurrency=2, concurrency=8)
    release = asyncio.Event()
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def handler(ctx: JobContext) -> None:
        box = ctx.mailbox or ""
        active[box] += 1
        peak[box] = max(peak[box], active[box])
        await release.wait()
        active[box] -= 1

    registry = JobRegistry()
    registry.register("test.job", handler)
    for _ in range(8):
        await add(database, mailbox="busy@x.test")
    for _ in range(3):
        await add(database, mailbox="other@x.test")
    workers = [Worker(databases(), settings, registry, worker_id=f"w{i}") for i in range(2)]
    async with running(*workers):
        await eventually(lambda: active["busy@x.test"] == 2 and active["other@x.test"] == 2)
        # Let every worker try to claim a few more rounds before the jobs end.
        for _ in range(5):
            for worker in workers:
                worker.wake()
            await asyncio.sleep(settings.worker.poll_seconds)
        assert len(await jobs(database, state="running")) == 4
        release.set()
        await eventually(lambda: all_settled(database))
    assert peak == Counter({"busy@x.test": 2, "other@x.test": 2})


async def test_retry_after_honoured_exactly_and_throttles_mailbox(
    database: Database, fast_settings: Settings
) -> None:
    clock = Clock()
    calls: list[tuple[int, int]] = []

    async def handler(ctx: JobContext) -> None:
        calls.append((ctx.job_id, ctx.attempt))
        if ctx.attempt == 1 and ctx.kind == "test.job":
            raise RetryAfter(120, throttle_mailbox=True)

    registry = JobRegistry()
    registry.register("test.job", handler)
    registry.register("test.sibling", handler)
    first = await add(database, mailbox="a@x.test")
    worker = Worker(database, fast_settings, registry, clock=clock)
    async with running(worker):
        await eventually(lambda: _pending_attempted(database, first))
        assert calls == [(first, 1)]
        row = await job(database, first)
        assert row.run_at == clock() + timedelta(seconds=120)
        assert row.last_error == "RetryAfter: retry in 120 s"
        # The whole mailbox waits: a new job for it is not started either.
        sibling = await add(database, "test.sibling", mailbox="a@x.test")
        worker.wake()
        await asyncio.sleep(fast_settings.worker.poll_seconds * 3)
        assert calls == [(first, 1)]
        clock.advance(120)
        worker.wake()
        await eventually(lambda: all_settled(database))
    assert sorted(calls) == [(first, 1), (first, 2), (sibling, 1)]


async def test_retry_at_absolute_time(database: Database, fast_settings: Settings) -> None:
    clock = Clock()
    at = clock() + timedelta(hours=2)

    async def handler(ctx: JobContext) -> None:
        raise RetryAfter(at=at)

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database, mailbox="a@x.test")
    async with running(Worker(database, fast_settings, registry, clock=clock)):
        await eventually(lambda: _pending_attempted(database, job_id))
    row = await job(database, job_id)
    assert (row.run_at, row.attempts) == (at, 1)
    async with database.session() as session:
        assert await session.get(Mailbox, "a@x.test") is None  # no throttle flag, no throttle


async def _pending_attempted(database: Database, job_id: int) -> bool:
    row = await job(database, job_id)
    return row.state == "pending" and row.attempts == 1


async def test_transient_error_backs_off_within_bounds(
    database: Database, fast_settings: Settings
) -> None:
    clock = Clock()
    strategy = RetryStrategy(base_seconds=10, max_seconds=1000)

    async def handler(ctx: JobContext) -> None:
        raise ConnectionError("reset by peer")

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    worker = Worker(database, fast_settings, registry, clock=clock, retry_strategy=strategy)
    async with running(worker):
        await eventually(lambda: _pending_attempted(database, job_id))
    row = await job(database, job_id)
    low, high = strategy.bounds(1)
    assert (low, high) == (5, 10)
    assert clock() + timedelta(seconds=low) <= row.run_at <= clock() + timedelta(seconds=high)
    assert row.last_error == "ConnectionError: reset by peer"


async def test_retry_and_dead_warnings_say_why_short_and_redacted(
    database: Database, fast_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator reading the retry warning learns the reason, not only the exception class:
    the message's start, on one line, with any credential in it masked."""
    body = "x" * 5000

    async def handler(ctx: JobContext) -> None:
        raise ConnectionError(f"upstream said\nclient_secret=s3cr3t-value-42 then {body}")

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database, max_attempts=2)
    caplog.set_level(logging.WARNING, logger="app.queue.worker")
    async with running(Worker(database, fast_settings, registry, clock=Clock(ticking=True))):
        await eventually(lambda: all_settled(database))
    assert (await job(database, job_id)).state == "dead"
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "app.queue.worker" and f"job {job_id} " in r.getMessage()
    ]
    retry = next(line for line in lines if "retry at" in line)
    dead = next(line for line in lines if line.endswith(", dead"))
    for line in (retry, dead):
        assert "(ConnectionError: upstream said client_secret=[redacted] then xxx" in line
        assert "s3cr3t-value-42" not in line and "\n" not in line
        assert len(line) < 400  # ~200 characters of reason, not the 5,000 of the body


async def test_permanent_error_fails_without_retry(
    database: Database, fast_settings: Settings
) -> None:
    calls: Counter[int] = Counter()

    async def handler(ctx: JobContext) -> None:
        calls[ctx.job_id] += 1
        raise PermanentError("User d.wellt@organization.com is invalid")

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    async with running(Worker(database, fast_settings, registry)):
        await eventually(lambda: all_settled(database))
    row = await job(database, job_id)
    assert (row.state, row.attempts, calls[job_id]) == ("failed", 1, 1)
    assert row.last_error == "PermanentError: User d.wellt@organization.com is invalid"
    assert row.finished_at is not None


async def test_a_failed_outcome_write_is_tried_again(
    database: Database, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refusing the outcome once (its connections all taken, say): the write is
    tried again, so the job ends `done` at once instead of running again after its lease."""
    monkeypatch.setattr("app.queue.worker._RECORD_RETRY_PAUSES", (0.01, 0.01))
    calls: Counter[int] = Counter()

    async def handler(ctx: JobContext) -> None:
        calls[ctx.job_id] += 1

    manager = JobManager.from_settings(database, fast_settings)
    complete = manager.complete
    refused: list[int] = []

    async def refusing_once(claimed: ClaimedJob, **kwargs: Any) -> bool:
        if not refused:
            refused.append(claimed.id)
            raise OperationalError("UPDATE job", {}, Exception("too many clients already"))
        return await complete(claimed, **kwargs)

    monkeypatch.setattr(manager, "complete", refusing_once)
    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    async with running(Worker(database, fast_settings, registry, manager=manager)):
        await eventually(lambda: all_settled(database))
    row = await job(database, job_id)
    assert refused == [job_id]
    assert (row.state, row.attempts, calls[job_id]) == ("done", 1, 1)


async def test_dead_after_max_attempts(database: Database, fast_settings: Settings) -> None:
    attempts: list[int] = []

    async def handler(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"boom {ctx.attempt}")

    registry = JobRegistry()
    registry.register("test.job", handler)
    default_limit = await add(database)  # settings: 3
    own_limit = await add(database, max_attempts=2)
    worker = Worker(database, fast_settings, registry, clock=Clock(ticking=True))
    async with running(worker):
        await eventually(lambda: all_settled(database))
    first, second = await job(database, default_limit), await job(database, own_limit)
    assert (first.state, first.attempts, first.last_error) == ("dead", 3, "ValueError: boom 3")
    assert (second.state, second.attempts, second.last_error) == ("dead", 2, "ValueError: boom 2")
    assert sorted(attempts) == [1, 1, 2, 2, 3]


async def test_lease_lapse_recovers_abandoned_claim(
    database: Database, fast_settings: Settings
) -> None:
    clock = Clock()
    done: list[tuple[int, int]] = []

    async def handler(ctx: JobContext) -> None:
        done.append((ctx.job_id, ctx.attempt))

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    # A worker claims the job, then dies: it never heartbeats or records an outcome.
    abandoned = await JobManager.from_settings(database, fast_settings).claim(
        worker_id="killed", kinds=["test.job"], now=clock()
    )
    assert abandoned is not None
    async with running(Worker(database, fast_settings, registry, clock=clock)):
        await asyncio.sleep(fast_settings.worker.heartbeat_interval * 3)
        assert done == []  # the lease still holds
        clock.advance(fast_settings.worker.lease_seconds + 1)
        await eventually(lambda: all_settled(database))
    assert done == [(job_id, 2)]
    assert (await job(database, job_id)).state == "done"


async def test_heartbeat_keeps_a_long_job_leased(
    databases: Callable[[], Database], database: Database, fast_settings: Settings
) -> None:
    clock = Clock()
    settings = with_worker(fast_settings, lease_seconds=1.0, heartbeat_seconds=0.02)
    release = asyncio.Event()
    runs: list[str] = []

    async def handler(ctx: JobContext) -> None:
        runs.append(ctx.worker_id)
        await release.wait()

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    holder = Worker(databases(), settings, registry, worker_id="holder", clock=clock)
    async with running(holder):
        await eventually(lambda: runs == ["holder"])
        rival = Worker(databases(), settings, registry, worker_id="rival", clock=clock)
        async with running(rival):
            # Five leases' worth of time passes in steps shorter than a lease; each step is
            # covered by a heartbeat, so the rival (which recovers stalled jobs) never gets it.
            for _ in range(10):
                clock.advance(0.5)
                await eventually(
                    lambda: _leased_until(database, job_id, clock() + timedelta(seconds=1))
                )
            assert (await job(database, job_id)).worker_id == "holder"
            release.set()
            await eventually(lambda: all_settled(database))
    assert runs == ["holder"]
    assert (await job(database, job_id)).attempts == 1


@pytest.mark.parametrize("recovered_by", ["another worker", "this worker, a new attempt"])
async def test_a_run_whose_lease_was_lost_is_stopped(
    database: Database, fast_settings: Settings, recovered_by: str
) -> None:
    """A run that lost its lease (its job recovered after a stall) stops at the next heartbeat:
    never two runs of one job racing each other's writes, even within one worker."""
    runs: list[int] = []
    stopped = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    holder = Worker(database, fast_settings, registry, worker_id="holder")
    async with running(holder):
        await eventually(lambda: runs == [1])
        # What recovery and a new claim leave behind: the job running as a later attempt.
        rival = "rival" if recovered_by == "another worker" else "holder"
        async with database.session_scope() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(worker_id=rival, attempts=Job.attempts + 1)
            )
        await asyncio.wait_for(stopped.wait(), fast_settings.worker.heartbeat_interval * 20)
        # The stopped run recorded nothing: the job is the new attempt's, still running.
        row = await job(database, job_id)
        assert (row.state, row.worker_id, row.attempts) == ("running", rival, 2)
    assert runs == [1]


async def _leased_until(database: Database, job_id: int, when: object) -> bool:
    return (await job(database, job_id)).lease_expires_at == when


async def test_graceful_stop_lets_in_flight_jobs_finish(
    database: Database, fast_settings: Settings
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    registry = JobRegistry()
    registry.register("test.job", handler)
    first = await add(database)
    worker = Worker(database, with_worker(fast_settings, concurrency=1), registry)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    second = await add(database)
    worker.stop()
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the in-flight job
    release.set()
    await asyncio.wait_for(task, 10)
    assert (await job(database, first)).state == "done"
    assert (await job(database, second)).state == "pending"  # nothing claimed after stop()


async def test_stop_after_grace_releases_without_counting_the_attempt(
    database: Database, fast_settings: Settings
) -> None:
    started = asyncio.Event()
    cancelled: list[int] = []

    async def handler(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.job_id)
            raise

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    worker = Worker(database, with_worker(fast_settings, shutdown_grace_seconds=0.05), registry)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 10)
    row = await job(database, job_id)
    assert cancelled == [job_id]
    assert (row.state, row.attempts, row.worker_id, row.lease_expires_at) == (
        "pending",
        0,
        None,
        None,
    )


async def test_cancelled_worker_task_releases_its_jobs(
    database: Database, fast_settings: Settings
) -> None:
    started = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        started.set()
        await asyncio.Event().wait()

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    task = asyncio.create_task(Worker(database, fast_settings, registry).run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    row = await job(database, job_id)
    assert (row.state, row.attempts) == ("pending", 0)


async def test_a_cancel_that_meets_a_wake_still_stops_the_worker(
    database: Database, fast_settings: Settings
) -> None:
    """A wake (a job ended, a job queued) in the same turn of the loop as the task's cancel:
    the idle wait must not take the wake and drop the cancel (Python 3.11's `wait_for` did),
    or the worker would run on and its task never end."""
    worker = Worker(database, with_worker(fast_settings, poll_seconds=60), JobRegistry())
    task = asyncio.create_task(worker.run())
    if worker.listener is not None:
        await asyncio.wait_for(worker.listener.listening.wait(), 10)
    await asyncio.sleep(0.3)  # idle in its poll: nothing to claim
    worker.wake()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert done, "the cancellation was lost: the worker kept running"


async def test_periodic_job_runs_once_per_tick_with_two_workers(
    databases: Callable[[], Database], database: Database, fast_settings: Settings
) -> None:
    every = 60.0
    start = next_tick(Clock()(), every) + timedelta(seconds=10)
    clock = Clock(start)
    ran: list[str | None] = []

    async def tick(ctx: JobContext) -> None:
        ran.append(ctx.dedupe_key)
        if len(ran) == 2:
            raise PermanentError("a failed tick still schedules the next one")

    registry = JobRegistry()
    registry.register("test.tick", tick, every_seconds=every)
    workers = [Worker(databases(), fast_settings, registry, clock=clock) for _ in range(2)]
    expected: list[str] = []
    async with running(*workers):
        for n in range(1, 4):
            at = start - timedelta(seconds=10) + timedelta(seconds=every * n)
            key = f"periodic:test.tick:{int(at.timestamp())}"
            await eventually(lambda key=key: _only_pending_key(database, key))
            clock.set(at)
            for worker in workers:
                worker.wake()
            expected.append(key)
            await eventually(lambda n=n: len(ran) == n)
        final = f"periodic:test.tick:{int((at + timedelta(seconds=every)).timestamp())}"
        await eventually(lambda: _only_pending_key(database, final))
        for _ in range(3):
            for worker in workers:
                worker.wake()
            await asyncio.sleep(fast_settings.worker.poll_seconds)
    assert ran == expected
    states = [(j.dedupe_key, j.state) for j in await jobs(database)]
    assert states == [
        (expected[0], "done"),
        (expected[1], "failed"),
        (expected[2], "done"),
        (final, "pending"),
    ]


async def _only_pending_key(database: Database, key: str) -> bool:
    return [j.dedupe_key for j in await jobs(database, state="pending")] == [key]


async def test_sigterm_stops_the_worker_gracefully(
    database: Database, fast_settings: Settings
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    registry = JobRegistry()
    registry.register("test.job", handler)
    job_id = await add(database)
    worker = Worker(database, fast_settings, registry)
    loop = asyncio.get_running_loop()
    install_signal_handlers(worker)
    try:
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)
        os.kill(os.getpid(), signal.SIGTERM)
        await eventually(lambda: worker.stopping)
        release.set()
        await asyncio.wait_for(task, 10)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
    assert (await job(database, job_id)).state == "done"
