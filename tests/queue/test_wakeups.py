"""PostgreSQL: a worker hears at once of the jobs other processes queue (app/queue/wakeups.py),
however long its idle poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.models.job import JOBS_CHANNEL
from app.queue.registry import JobContext, JobRegistry
from app.queue.repository import NewJob, enqueue, enqueue_many
from app.queue.wakeups import JobListener
from app.queue.worker import Worker
from tests.helpers import eventually
from tests.queue.conftest import running, with_worker

# Far longer than any wait below: what is picked up in time was not found by the poll.
SLOW_POLL_S = 120.0


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.is_sqlite:
        pytest.skip("SQLite has no LISTEN/NOTIFY; its worker runs in the API's process")
    return database


@pytest.fixture
async def other_process(postgres: Database) -> AsyncIterator[Database]:
    """Another process's view of the database: an engine (and pool) of its own."""
    other = Database(postgres.url)
    yield other
    await other.dispose()


def slow_polling_worker(database: Database, settings: Settings, ran: list[int]) -> Worker:
    registry = JobRegistry()

    @registry.job("test.job")
    async def handler(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    return Worker(database, with_worker(settings, poll_seconds=SLOW_POLL_S), registry)


async def settled(worker: Worker) -> None:
    """Listening, and idle after the claim that listening started."""
    assert worker.listener is not None
    await asyncio.wait_for(worker.listener.listening.wait(), 10)
    await asyncio.sleep(0.3)


async def queue_one(database: Database) -> int:
    async with database.session_scope() as session:
        job_id = await enqueue(session, "test.job")
    assert job_id is not None
    return job_id


async def test_an_idle_worker_runs_a_job_another_process_queues_at_once(
    postgres: Database, other_process: Database, fast_settings: Settings
) -> None:
    ran: list[int] = []
    worker = slow_polling_worker(postgres, fast_settings, ran)
    async with running(worker):
        await settled(worker)
        job_id = await queue_one(other_process)
        await eventually(lambda: ran == [job_id], within=5)


async def test_the_listener_listens_again_after_losing_its_connection(
    postgres: Database, other_process: Database, fast_settings: Settings
) -> None:
    ran: list[int] = []
    worker = slow_polling_worker(postgres, fast_settings, ran)
    assert worker.listener is not None
    find = text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
    async with running(worker):
        await settled(worker)
        async with other_process.session() as session:
            [first] = (await session.execute(find, {"name": worker.listener.name})).scalars()
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})

        async def listening_on_a_new_connection() -> bool:
            async with other_process.session() as session:
                pids = (await session.execute(find, {"name": worker.listener.name})).scalars()
                return list(pids) not in ([], [first])

        await eventually(listening_on_a_new_connection, within=10)
        await settled(worker)
        job_id = await queue_one(other_process)
        await eventually(lambda: ran == [job_id], within=5)


async def test_the_listener_hears_its_own_schema_once_per_transaction(
    postgres: Database, other_process: Database
) -> None:
    """The trigger notifies when jobs become pending, one notification per transaction;
    notifications of another schema (another calbridge in the same database) are not ours."""
    heard: list[None] = []
    listener = JobListener(postgres, lambda: heard.append(None), name="calbridge-test-listener")
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        assert len(heard) == 1  # on listening: whatever was queued meanwhile

        async def quiet_then(expected: int) -> None:
            await eventually(lambda: len(heard) >= expected, within=5)
            await asyncio.sleep(0.3)
            assert len(heard) == expected

        async with other_process.session_scope() as session:
            await session.execute(
                text("SELECT pg_notify(:channel, 'some_other_schema')"), {"channel": JOBS_CHANNEL}
            )
            await enqueue_many(session, [NewJob("test.job", {}, f"k{i}") for i in range(5)])
        await quiet_then(2)

        async with other_process.session_scope() as session:
            await session.execute(
                text("SELECT pg_notify(:channel, 'some_other_schema')"), {"channel": JOBS_CHANNEL}
            )
        await asyncio.sleep(0.3)
        assert len(heard) == 2

        job_id = await queue_one(other_process)
        await quiet_then(3)

        async def set_state(state: str) -> None:
            async with other_process.session_scope() as session:
                update = text("UPDATE job SET state = :state WHERE id = :id")
                await session.execute(update, {"state": state, "id": job_id})

        await set_state("running")  # leaving pending (claimed, finished) notifies nobody
        await asyncio.sleep(0.3)
        assert len(heard) == 3
        await set_state("pending")  # back to pending (a retry, a release): a notification
        await quiet_then(4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_sqlite_worker_has_no_listener(database: Database, fast_settings: Settings) -> None:
    if not database.is_sqlite:
        pytest.skip("the SQLite case")
    assert Worker(database, fast_settings, JobRegistry()).listener is None


async def test_the_listener_outlives_an_unexpected_error(
    postgres: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever stops one attempt to listen, the listener tries again (with the trace logged)."""
    connect = psycopg.AsyncConnection.connect
    failures = ["first attempt"]

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise RuntimeError(failures.pop())
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", failing_once)
    listener = JobListener(postgres, lambda: None, name="calbridge-test-listener")
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [failed] = [r for r in caplog.records if "not listening" in r.getMessage()]
    assert "first attempt" in failed.getMessage() and failed.exc_info is not None
