"""Queue test helpers: a settable clock, fast worker settings, running workers, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.db import Database
from app.models import Job
from app.models.base import utcnow
from app.queue.manager import JobManager
from app.queue.worker import Worker


class Clock:
    """The time the queue sees. Frozen by default (exact assertions); `ticking` follows real
    time from its start. `advance()` jumps either way. Starts a minute ahead of real time so
    jobs enqueued with the default run_at (real now) are due."""

    def __init__(self, start: datetime | None = None, *, ticking: bool = False) -> None:
        self._start = start or utcnow() + timedelta(minutes=1)
        self._offset = timedelta()
        self._ticking = ticking
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        now = self._start + self._offset
        if self._ticking:
            now += timedelta(seconds=time.monotonic() - self._t0)
        return now

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self._offset += when - self()


def with_worker(settings: Settings, **worker: Any) -> Settings:
    """`settings` with some `settings.worker` values replaced."""
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=worker)})


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return with_worker(
        settings,
        concurrency=4,
        lease_seconds=30.0,
        heartbeat_seconds=0.1,
        poll_seconds=0.02,
        max_attempts=3,
        backoff_base_seconds=0.001,
        backoff_max_seconds=0.002,
        shutdown_grace_seconds=5.0,
    )


@pytest.fixture
def manager(database: Database, fast_settings: Settings) -> JobManager:
    return JobManager.from_settings(database, fast_settings)


@pytest.fixture
async def databases(database: Database) -> AsyncIterator[Callable[[], Database]]:
    """Databases for workers that model separate processes: on PostgreSQL each its own engine
    (pool); SQLite shares the test's (one connection per process is how calbridge runs it)."""
    made: list[Database] = []

    def make() -> Database:
        if database.is_sqlite:
            return database
        db = Database(database.url)
        made.append(db)
        return db

    yield make
    for db in made:
        await db.dispose()


@asynccontextmanager
async def running(
    *workers: Worker, stop_within: float = 15.0
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the workers for the block, then stop them gracefully (or fail if they hang)."""
    tasks = [asyncio.create_task(w.run(), name=f"test-worker-{i}") for i, w in enumerate(workers)]
    try:
        yield tasks
    finally:
        for worker in workers:
            worker.stop()
        done, pending = await asyncio.wait(tasks, timeout=stop_within)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not pending, "a worker did not stop"
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def jobs(database: Database, **where: Any) -> list[Job]:
    query = select(Job).order_by(Job.id)
    for column, value in where.items():
        query = query.where(getattr(Job, column) == value)
    async with database.session() as session:
        return list((await session.scalars(query)).all())


async def job(database: Database, job_id: int) -> Job:
    async with database.session() as session:
        row = await session.get(Job, job_id)
    assert row is not None
    return row


async def all_settled(database: Database) -> bool:
    """No job pending or running."""
    query = select(func.count()).where(Job.state.in_(("pending", "running")))
    async with database.session() as session:
        return (await session.scalar(query)) == 0
