"""A worker process killed mid-job: its job is claimed again once the lease lapses."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from app.config import Settings
from app.db import Database
from app.queue.registry import JobContext, JobRegistry
from app.queue.repository import enqueue
from app.queue.worker import Worker
from tests.helpers import eventually
from tests.queue.conftest import Clock, job, running

ROOT = Path(__file__).resolve().parents[2]


async def _held_by(database: Database, job_id: int, worker_id: str) -> bool:
    row = await job(database, job_id)
    return row.state == "running" and row.worker_id == worker_id


async def test_killed_worker_process_job_is_recovered_after_lease(
    database: Database, fast_settings: Settings
) -> None:
    async with database.session_scope() as session:
        job_id = await enqueue(session, "test.job")
    assert job_id is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.queue.crash_worker", database.url, cwd=ROOT
    )
    try:
        await eventually(lambda: _held_by(database, job_id, "doomed"), within=30)
    finally:
        process.kill()  # SIGKILL: no shutdown code runs
        await process.wait()
    crashed = await job(database, job_id)
    assert crashed.state == "running" and crashed.attempts == 1
    assert crashed.lease_expires_at is not None

    runs: list[int] = []

    async def handler(ctx: JobContext) -> None:
        runs.append(ctx.attempt)

    registry = JobRegistry()
    registry.register("test.job", handler)
    clock = Clock(crashed.lease_expires_at - timedelta(seconds=1))
    worker = Worker(database, fast_settings, registry, worker_id="survivor", clock=clock)
    async with running(worker):
        await asyncio.sleep(fast_settings.worker.heartbeat_interval * 2)
        assert runs == []  # the lease still holds
        clock.advance(2)  # one second past the lease
        await eventually(lambda: runs == [2])
    row = await job(database, job_id)
    assert (row.state, row.attempts, row.worker_id) == ("done", 2, "survivor")
