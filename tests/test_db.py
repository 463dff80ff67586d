"""`Database` on both engines: one transaction per `session_scope()`, committed on success and
rolled back on error; SQLite in WAL mode with foreign keys on and every transaction taking the
write lock at BEGIN; PostgreSQL's pool replacing dead connections and keeping to its size."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, sqlite_path
from app.models.base import UTCDateTime

# Tables of this test's own, so that it depends on no domain model.
metadata = MetaData()
parent = Table("db_test_parent", metadata, Column("id", Integer, primary_key=True))
child = Table(
    "db_test_child",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", Integer, ForeignKey(parent.c.id), nullable=False),
    Column("name", String(50), nullable=False),
)
PARENT_ID = 1


@pytest.fixture
async def database(empty_db_url: str) -> AsyncIterator[Database]:
    db = Database(empty_db_url)
    try:
        async with db.session_scope() as session:
            await session.run_sync(lambda sync: metadata.create_all(sync.connection()))
            await session.execute(insert(parent).values(id=PARENT_ID))
        yield db
    finally:
        await db.dispose()


def _sqlite_only(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's own settings and locking")


def _postgres_only(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("PostgreSQL's connection pool")


async def _add_child(session: AsyncSession, name: str, parent_id: int = PARENT_ID) -> None:
    await session.execute(insert(child).values(parent_id=parent_id, name=name))


async def _names(database: Database) -> list[str]:
    async with database.session() as session:
        return list((await session.scalars(select(child.c.name).order_by(child.c.id))).all())


# Transactions ----------------------------------------------------------------------------------


async def test_session_scope_commits_when_its_block_succeeds(database: Database) -> None:
    async with database.session_scope() as session:
        await _add_child(session, "a")
        await _add_child(session, "b")
    assert await _names(database) == ["a", "b"]


async def test_session_scope_rolls_back_when_its_block_raises(database: Database) -> None:
    with pytest.raises(RuntimeError, match="stop"):
        async with database.session_scope() as session:
            await _add_child(session, "half")
            raise RuntimeError("stop")
    assert await _names(database) == []
    # Nothing was left half open: the next transaction commits.
    async with database.session_scope() as session:
        await _add_child(session, "next")
    assert await _names(database) == ["next"]


async def test_a_session_rolls_back_what_was_not_committed(database: Database) -> None:
    async with database.session() as session:
        await _add_child(session, "uncommitted")
    async with database.session() as session:
        await _add_child(session, "committed")
        await session.commit()
    assert await _names(database) == ["committed"]


async def test_foreign_keys_are_enforced_and_the_error_rolls_back(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.session_scope() as session:
            await _add_child(session, "valid")
            await _add_child(session, "orphan", parent_id=PARENT_ID + 999)
    assert await _names(database) == []


async def test_concurrent_writers_all_commit(database: Database, empty_db_url: str) -> None:
    """Many tasks of two processes (two `Database`s on one file), each reading then writing in
    one transaction: none fails with 'database is locked' (with a deferred BEGIN, two readers
    racing to upgrade to the write lock would), and every write lands."""
    other = Database(empty_db_url)

    async def write(db: Database, name: str) -> None:
        async with db.session_scope() as session:
            await session.scalar(select(func.count()).select_from(child))
            await _add_child(session, name)

    try:
        await asyncio.gather(
            *(write(database, f"a{n}") for n in range(25)),
            *(write(other, f"b{n}") for n in range(25)),
        )
    finally:
        await other.dispose()
    names = await _names(database)
    assert sorted(names) == sorted([f"a{n}" for n in range(25)] + [f"b{n}" for n in range(25)])


# SQLite ----------------------------------------------------------------------------------------


async def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(
    database: Database,
) -> None:
    _sqlite_only(database)
    async with database.session() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar_one() > 0


def _write_as_another_process(path: Path, name: str) -> None:
    """An autocommitted insert on a connection of its own that does not wait for the lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA busy_timeout=0")
        other.execute(
            "INSERT INTO db_test_child (parent_id, name) VALUES (?, ?)", (PARENT_ID, name)
        )
    finally:
        other.close()


async def test_a_transaction_holds_the_write_lock_from_its_begin(
    database: Database, empty_db_url: str
) -> None:
    """`BEGIN IMMEDIATE`: a transaction that has only read already keeps other writers out."""
    _sqlite_only(database)
    path = sqlite_path(empty_db_url)
    assert path is not None
    async with database.session_scope() as session:
        await session.scalar(select(func.count()).select_from(child))
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await asyncio.to_thread(_write_as_another_process, path, "during")
    await asyncio.to_thread(_write_as_another_process, path, "after")
    assert await _names(database) == ["after"]


class _AnotherProcessWrites:
    """Holds SQLite's write lock, as another process's open transaction would, until released."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.close()


async def test_a_transaction_waits_for_another_processs_lock_without_blocking_the_loop(
    database: Database, empty_db_url: str
) -> None:
    _sqlite_only(database)
    path = sqlite_path(empty_db_url)
    assert path is not None

    async def write() -> None:
        async with database.session_scope() as session:
            await _add_child(session, "after-it")

    other = _AnotherProcessWrites(path)
    try:
        task = asyncio.create_task(write())
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()  # the loop ran on; the write is waiting
    finally:
        other.release()
    await asyncio.wait_for(task, 10)
    assert await _names(database) == ["after-it"]


async def test_a_session_cancelled_while_its_begin_waits_leaves_the_connection_clean(
    database: Database, empty_db_url: str
) -> None:
    """A session's task is cancelled (a run whose lease was lost, say) while its BEGIN waits for
    another process's lock: once the lock is free, that BEGIN must not leave the process's one
    connection inside a transaction nobody owns."""
    _sqlite_only(database)
    path = sqlite_path(empty_db_url)
    assert path is not None

    async def write() -> None:
        async with database.session_scope() as session:
            await _add_child(session, "cancelled")

    other = _AnotherProcessWrites(path)
    try:
        task = asyncio.ensure_future(write())
        await asyncio.sleep(0.1)  # its BEGIN waits for the lock
        task.cancel()
        await asyncio.sleep(0.1)
    finally:
        other.release()  # the waiting BEGIN gets the lock now
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    async with database.session_scope() as session:
        await _add_child(session, "next")
    assert await _names(database) == ["next"]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 1, 2, 3, 999_999, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    ],
)
def test_utc_datetimes_are_stored_as_sqlalchemys_sqlite_text(value: datetime) -> None:
    """The SQLite text of a UTC datetime is exactly what SQLAlchemy's DATETIME writes (stored
    rows and indexes compare it as text), whatever the value's offset."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    sqlalchemys = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and sqlalchemys is not None
    assert ours(value) == sqlalchemys(value.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(value.replace(tzinfo=None))


# PostgreSQL ------------------------------------------------------------------------------------


async def _backend_pid(database: Database, hold: float = 0.0) -> int:
    """The server process of the pooled connection a session gets (kept `hold` seconds)."""
    async with database.session() as session:
        row = (
            await session.execute(text("SELECT pg_backend_pid(), pg_sleep(:s)"), {"s": hold})
        ).one()
        return int(row[0])


async def _terminate(empty_db_url: str, pids: set[int]) -> None:
    """What a server restart does to them, from another process."""
    other = Database(empty_db_url)
    try:
        async with other.session() as session:
            await session.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(:p)"),
                {"p": list(pids)},
            )
    finally:
        await other.dispose()


async def test_pooled_connections_the_server_killed_are_replaced_on_the_next_sessions(
    database: Database, empty_db_url: str
) -> None:
    """The server ends the pool's idle connections (a restart, an operator, a firewall's idle
    timeout): the next sessions get new ones, without an error."""
    _postgres_only(database)
    pids = set(await asyncio.gather(*(_backend_pid(database, hold=0.2) for _ in range(3))))
    assert len(pids) == 3
    await _terminate(empty_db_url, pids)
    await asyncio.sleep(1.1)  # idle long enough for any ping-after-idle policy to look at them
    fresh = set(await asyncio.gather(*(_backend_pid(database, hold=0.2) for _ in range(3))))
    assert not fresh & pids
    assert await _names(database) == []


async def test_a_session_whose_connection_dies_fails_and_the_next_gets_a_new_one(
    database: Database,
) -> None:
    """The server ends the session's connection mid-transaction: the session fails with
    SQLAlchemy's error marked as a lost connection, nothing it wrote stays, the dead connection
    leaves the pool, and the next session runs on a new one."""
    _postgres_only(database)
    with pytest.raises(DBAPIError) as caught:
        async with database.session_scope() as session:
            await _add_child(session, "lost")
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    assert caught.value.connection_invalidated
    assert database.engine.pool.checkedout() == 0
    async with database.session_scope() as session:
        await _add_child(session, "next")
    assert await _names(database) == ["next"]


async def test_a_session_cancelled_mid_statement_rolls_back_and_frees_its_connection(
    database: Database,
) -> None:
    """A session's task is cancelled while the server runs its statement: the task ends at once,
    its writes are rolled back, and its connection goes back to the pool (or is replaced)."""
    _postgres_only(database)

    async def slow() -> None:
        async with database.session_scope() as session:
            await _add_child(session, "cancelled")
            await session.execute(text("SELECT pg_sleep(30)"))

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert database.engine.pool.checkedout() == 0
    assert await _names(database) == []
    async with database.session_scope() as session:
        await _add_child(session, "next")
    assert await _names(database) == ["next"]


async def test_the_pool_never_holds_more_connections_than_its_size(database: Database) -> None:
    """More sessions at once than the pool has connections: they wait for one in turn, and the
    server never sees more of this process's connections than the pool's size."""
    _postgres_only(database)
    size = database.engine.pool.size()
    pids = await asyncio.gather(*(_backend_pid(database, hold=0.05) for _ in range(size * 3)))
    assert 1 < len(set(pids)) <= size
