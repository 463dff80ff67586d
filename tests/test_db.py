"""`Database`: a plain-SQL unit of work (`run_unit`) as one transaction on both engines; on SQLite
statements on the event loop while the write lock is held, waits for another process's lock off
the loop, checkpoints in a thread; and `insert_jobs`, the queue's enqueue inside such a unit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    Database,
    Statements,
    param_marker,
    run_in_session,
    sqlite_path,
)
from app.models import Job
from app.queue.repository import NewJob, enqueue_many, insert_jobs
from tests.conftest import bare_connection

T = TypeVar("T")


def _insert_inbox_row(db: Statements, external_id: str, connection_id: int) -> None:
    mark = param_marker(db.dialect.name)
    db.rows(
        "INSERT INTO inbox_event (source, connection_id, external_id, event_type, outcome, "
        f"received_at) VALUES ('test', {mark}, {mark}, 'x', 'accepted', CURRENT_TIMESTAMP)",
        (connection_id, external_id),
    )


async def _count_inbox(database: Database) -> int:
    def count(db: Statements) -> int:
        [(n,)] = db.rows("SELECT count(*) FROM inbox_event", ())
        return int(n)

    return await database.run_unit(count)


async def _seed_connection(database: Database) -> int:
    async with database.session_scope() as session:
        connection = bare_connection("f6Org")
        session.add(connection)
        await session.flush()
        return connection.id


async def test_a_unit_commits_when_it_returns(database: Database) -> None:
    connection_id = await _seed_connection(database)

    def insert(db: Statements) -> str:
        _insert_inbox_row(db, "a", connection_id)
        _insert_inbox_row(db, "b", connection_id)
        return "done"

    assert await database.run_unit(insert) == "done"
    assert await _count_inbox(database) == 2


async def test_a_unit_that_raises_leaves_nothing_behind(database: Database) -> None:
    connection_id = await _seed_connection(database)

    def half(db: Statements) -> None:
        _insert_inbox_row(db, "a", connection_id)
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        await database.run_unit(half)
    assert await _count_inbox(database) == 0
    # The connection is usable again: nothing was left half open.
    await database.run_unit(lambda db: _insert_inbox_row(db, "b", connection_id))
    assert await _count_inbox(database) == 1


async def test_driver_errors_are_sqlalchemys_and_roll_back(database: Database) -> None:
    connection_id = await _seed_connection(database)

    def valid_then_orphan(db: Statements) -> None:
        _insert_inbox_row(db, "a", connection_id)
        _insert_inbox_row(db, "b", connection_id + 999)  # no such connection: a foreign key

    with pytest.raises(IntegrityError):
        await database.run_unit(valid_then_orphan)
    assert await _count_inbox(database) == 0


async def test_units_and_sessions_share_the_database_in_turn(database: Database) -> None:
    """Concurrent units and ordinary sessions all complete (on SQLite they queue for the one
    connection; none sees another's half-done transaction)."""
    connection_id = await _seed_connection(database)

    async def via_session(n: int) -> None:
        async with database.session_scope() as session:
            await enqueue_many(session, [NewJob("test.kind", {"n": n}, f"session:{n}")])

    await asyncio.gather(
        *(
            database.run_unit(lambda db, n=n: _insert_inbox_row(db, f"u{n}", connection_id))
            for n in range(20)
        ),
        *(via_session(n) for n in range(20)),
    )
    assert await _count_inbox(database) == 20
    async with database.session() as session:
        assert len((await session.scalars(select(Job))).all()) == 20


async def test_insert_jobs_writes_what_enqueue_many_writes(database: Database) -> None:
    run_at = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    jobs = [
        NewJob("sync.appointment", {"connection_id": 1, "appointment_id": "ä1"}, "k:1"),
        NewJob(
            "sync.appointment",
            {"connection_id": 1, "appointment_id": "2"},
            "k:2",
            serial_key="s:2",
            mailbox="max@contoso.example",
            run_at=run_at,
            max_attempts=3,
        ),
        NewJob("sync.appointment", {"connection_id": 1, "appointment_id": "dup"}, "k:1"),
    ]
    first = await database.run_unit(lambda db: insert_jobs(db, jobs))
    assert set(first) == {"k:1", "k:2"} and all(job_id is not None for job_id in first.values())
    # Again while pending: nothing new, as with enqueue_many.
    again = await database.run_unit(lambda db: insert_jobs(db, jobs))
    assert again == {"k:1": None, "k:2": None}
    async with database.session_scope() as session:
        assert await enqueue_many(session, jobs[:1]) == {"k:1": None}

    async with database.session() as session:
        rows = {job.dedupe_key: job for job in (await session.scalars(select(Job))).all()}
    assert rows["k:1"].id == first["k:1"]
    assert rows["k:1"].args == {"connection_id": 1, "appointment_id": "ä1"}
    assert rows["k:1"].state == "pending" and rows["k:1"].attempts == 0
    assert rows["k:1"].serial_key is None and rows["k:1"].mailbox is None
    created = rows["k:1"].created_at
    assert created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert rows["k:1"].run_at == created  # due at once
    assert rows["k:2"].run_at == run_at
    assert (rows["k:2"].serial_key, rows["k:2"].mailbox, rows["k:2"].max_attempts) == (
        "s:2",
        "max@contoso.example",
        3,
    )


def test_aiosqlite_still_runs_functions_in_its_thread() -> None:
    """`run_unit` relies on aiosqlite's `Connection._execute(fn)` (its own methods use it)."""

    async def check() -> int:
        async with aiosqlite.connect(":memory:") as connection:
            value = await connection._execute(  # type: ignore[no-untyped-call]
                lambda: connection._conn.execute("SELECT 7").fetchone()[0]
            )
            return int(value)

    assert asyncio.run(check()) == 7


async def test_a_connection_returned_mid_transaction_is_rolled_back(database: Database) -> None:
    """SQLite's pool skips its reset hand-off; a transaction left open is still rolled back."""
    if not database.is_sqlite:
        pytest.skip("the reset on return is SQLite's own (PostgreSQL keeps the pool's)")
    connection_id = await _seed_connection(database)
    async with database.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute(
            "INSERT INTO inbox_event (source, connection_id, external_id, event_type, outcome, "
            "received_at) VALUES ('test', ?, 'left-open', 'x', 'accepted', CURRENT_TIMESTAMP)",
            (connection_id,),
        )
        assert driver.in_transaction
    # Back in the pool: the next unit can begin, and the half-done insert is gone.
    assert await _count_inbox(database) == 0
    await database.run_unit(lambda db: _insert_inbox_row(db, "next", connection_id))
    assert await _count_inbox(database) == 1


async def test_a_unit_runs_on_the_loop_when_the_write_lock_is_free(database: Database) -> None:
    """No GIL hand-offs between the loop and the driver's thread for every statement."""
    if not database.is_sqlite:
        pytest.skip("PostgreSQL runs units in a session")
    connection_id = await _seed_connection(database)
    threads: list[int] = []

    def unit(db: Statements) -> None:
        threads.append(threading.get_ident())
        _insert_inbox_row(db, "on-the-loop", connection_id)

    await database.run_unit(unit)
    assert threads == [threading.get_ident()]
    assert await _count_inbox(database) == 1


async def test_a_unit_waits_off_the_loop_while_another_process_writes(
    database: Database, db_url: str
) -> None:
    """Another process holding SQLite's write lock: the unit waits for it in the driver's thread
    (the loop goes on), then commits; the connection's busy timeout is what it was."""
    if not database.is_sqlite:
        pytest.skip("PostgreSQL runs units in a session")
    connection_id = await _seed_connection(database)
    path = sqlite_path(db_url)
    assert path is not None
    await _while_another_process_writes(
        path, database.run_unit(lambda db: _insert_inbox_row(db, "after-it", connection_id))
    )
    assert await _count_inbox(database) == 1
    assert await _busy_timeout(database) == SQLITE_BUSY_TIMEOUT_MS


async def _while_another_process_writes(path: Path, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` while another connection (as another process would) holds the write lock:
    the loop must go on while `work` waits; then the lock is released and `work` finishes."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        task = asyncio.create_task(work)
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()  # the loop ran on; the work is waiting
    finally:
        other.execute("COMMIT")
        other.close()
    return await asyncio.wait_for(task, 10)


async def _busy_timeout(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar_one())


async def test_commits_leave_checkpoints_to_a_thread(database: Database) -> None:
    """No COMMIT runs SQLite's automatic checkpoint (fsyncs on the loop), a unit's or a
    session's; every few commits a checkpoint runs in a thread instead."""
    if not database.is_sqlite:
        pytest.skip("PostgreSQL has no WAL checkpoints to schedule")
    connection_id = await _seed_connection(database)
    database.commits_per_checkpoint = 4

    async def checkpointed(runs: int) -> bool:
        for _ in range(200):
            if database.checkpoints >= runs:
                return True
            await asyncio.sleep(0.01)
        return False

    before = database.checkpoints
    for number in range(6):
        async with database.session_scope() as session:
            await run_in_session(
                session, lambda db, n=number: _insert_inbox_row(db, f"s{n}", connection_id)
            )
    assert await checkpointed(before + 1)  # sessions' commits count
    for number in range(6):
        await database.run_unit(lambda db, n=number: _insert_inbox_row(db, f"u{n}", connection_id))
    assert await checkpointed(before + 2)  # and units'
    assert await _count_inbox(database) == 12
    async with database.engine.connect() as connection:
        pages = (await connection.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one()
    assert pages == 0


async def _session_threads(database: Database) -> list[int]:
    """The threads that ran a session's statement, recorded by a SQL function."""
    threads: list[int] = []
    async with database.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        driver._conn.create_function(
            "calling_thread", 0, lambda: threads.append(threading.get_ident()) or 1
        )
    async with database.session_scope() as session:
        await session.execute(text("SELECT calling_thread()"))
    return threads


async def test_a_sessions_statements_run_on_the_loop(database: Database) -> None:
    """Inside a transaction (which holds the write lock) a statement cannot wait for another
    process, so it runs on the loop's thread, not in aiosqlite's."""
    if not database.is_sqlite:
        pytest.skip("psycopg has no driver thread")
    assert await _session_threads(database) == [threading.get_ident()]


async def test_a_session_waits_off_the_loop_while_another_process_writes(
    database: Database, db_url: str
) -> None:
    """Another process holding SQLite's write lock: a session's BEGIN waits for it in the
    driver's thread (the loop goes on); once it has the lock, it runs on the loop."""
    if not database.is_sqlite:
        pytest.skip("PostgreSQL runs no BEGIN IMMEDIATE")
    await _seed_connection(database)  # connected (and in WAL mode) before the other writes
    path = sqlite_path(db_url)
    assert path is not None
    threads = await _while_another_process_writes(path, _session_threads(database))
    assert threads == [threading.get_ident()]
    assert await _busy_timeout(database) == SQLITE_BUSY_TIMEOUT_MS
