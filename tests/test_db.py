"""`Database`: a plain-SQL unit of work (`run_unit`) as one transaction on both engines; on SQLite
statements on the event loop while the write lock is held, waits for another process's lock off
the loop, checkpoints in a thread; and `insert_jobs`, the queue's enqueue inside such a unit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import aiosqlite
import pytest
from sqlalchemy import DateTime, bindparam, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    Database,
    Statements,
    param_marker,
    run_in_session,
    sqlite_path,
)
from app.models import Job
from app.models.base import UTCDateTime
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
    """No GIL hand-offs between the loop and the driver's thread for every statement (psycopg
    has no such thread: its statements are awaited on the loop)."""
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
        pytest.skip("PostgreSQL's writers do not wait for one another's lock to begin")
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


# Core statements in a unit (`Statements.execute`): on SQLite compiled once and run on the driver,
# so they must store and read exactly what SQLAlchemy's own execution stores and reads.

_JOB = Job.__table__
_JOB_VALUES = {
    name: bindparam(name, type_=_JOB.c[name].type)
    for name in ("kind", "args", "state", "run_at", "attempts", "serial_key", "created_at")
}
_ADD_JOB = insert(_JOB).values(_JOB_VALUES).returning(_JOB.c.id, _JOB.c.args, _JOB.c.run_at)
_DUE = (
    select(_JOB.c.id, _JOB.c.kind, _JOB.c.run_at, _JOB.c.args)
    .where(
        _JOB.c.kind.in_(bindparam("kinds", expanding=True)),
        _JOB.c.run_at <= bindparam("now", type_=UTCDateTime()),
    )
    .order_by(_JOB.c.id)
)


_ADD_JOB_QUIETLY = insert(_JOB).values(_JOB_VALUES)


def _job_values(kind: str, run_at: datetime, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "args": args,
        "state": "pending",
        "run_at": run_at,
        "attempts": 0,
        "serial_key": None,
        "created_at": run_at,
    }


async def test_core_statements_in_a_unit_store_and_read_what_sqlalchemy_does(
    database: Database,
) -> None:
    due = datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=UTC)
    args = {"appointment_id": "ä1", "n": [1, 2]}
    [added] = await database.run_unit(
        lambda db: db.execute(_ADD_JOB, _job_values("unit.kind", due, args))
    )
    assert (added.args, added.run_at) == (args, due)  # RETURNING values typed as SQLAlchemy's
    async with database.session_scope() as session:
        await session.execute(_ADD_JOB, _job_values("session.kind", due, args))
    # The raw stored values are the same, whichever way the row was written.
    raw = await database.run_unit(
        lambda db: db.rows("SELECT kind, args, run_at, created_at FROM job ORDER BY id", ())
    )
    assert [tuple(row[1:]) for row in raw[:1]] == [tuple(row[1:]) for row in raw[1:]]
    async with database.session() as session:
        stored = (await session.scalars(select(Job).order_by(Job.id))).all()
    assert [(j.kind, j.args, j.run_at) for j in stored] == [
        ("unit.kind", args, due),
        ("session.kind", args, due),
    ]


async def test_an_insert_without_returning_gives_no_rows(database: Database) -> None:
    # SQLAlchemy would add `RETURNING job.id` to it on PostgreSQL, for its own use.
    due = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    rows = await database.run_unit(
        lambda db: db.execute(_ADD_JOB_QUIETLY, _job_values("quiet", due, {}))
    )
    assert rows == []
    async with database.session() as session:
        assert (await session.scalars(select(Job.kind))).all() == ["quiet"]


async def test_an_in_list_and_typed_parameters_in_one_unit_statement(database: Database) -> None:
    # A whole second: the text sqlite3 would make of the raw value differs from the stored one.
    due = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    for kind, run_at in [("a", due), ("b", due + timedelta(microseconds=1)), ("c", due)]:
        await database.run_unit(
            lambda db, k=kind, r=run_at: db.execute(_ADD_JOB, _job_values(k, r, {}))
        )

    def query(db: Statements) -> list[tuple[str, datetime]]:
        rows = db.execute(_DUE, {"kinds": ["a", "b"], "now": due})  # due exactly: "a" only
        return [(row.kind, row.run_at) for row in rows]

    assert await database.run_unit(query) == [("a", due)]
    async with database.session() as session:
        assert await run_in_session(session, query) == [("a", due)]


_DUE_EXCEPT = _DUE.where(_JOB.c.id.not_in(bindparam("skipped", expanding=True)))


async def test_in_lists_of_each_length_bind_their_own_items(database: Database) -> None:
    """Two IN lists in one statement, with lengths that change from one execution to the next
    (a set and an empty list among them): each item lands at its own place, as when SQLAlchemy
    runs the statement."""
    due = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    ids = {}
    for kind in "abcd":
        [row] = await database.run_unit(
            lambda db, k=kind: db.execute(_ADD_JOB, _job_values(k, due, {}))
        )
        ids[kind] = row.id
    later = due + timedelta(hours=1)
    cases = [
        ({"kinds": ["a", "b", "c"], "skipped": [ids["b"]]}, ["a", "c"]),
        ({"kinds": ["d"], "skipped": []}, ["d"]),
        ({"kinds": {"c", "d"}, "skipped": [ids["a"], ids["d"]]}, ["c"]),
        ({"kinds": ["a", "b", "c"], "skipped": [ids["c"], ids["a"]]}, ["b"]),
        ({"kinds": [], "skipped": [ids["a"]]}, []),
        ({"kinds": ["b", "a", "d", "c"], "skipped": []}, ["a", "b", "c", "d"]),
    ]

    def query(parameters: dict[str, Any]) -> Any:
        def run(db: Statements) -> list[str]:
            return [row.kind for row in db.execute(_DUE_EXCEPT, {**parameters, "now": later})]

        return run

    for parameters, expected in cases:
        assert await database.run_unit(query(parameters)) == expected, parameters
        async with database.session() as session:
            assert await run_in_session(session, query(parameters)) == expected


async def test_a_unit_statement_needing_python_defaults_is_refused(database: Database) -> None:
    # created_at has a Python default, which SQLAlchemy computes per execution; a unit's compiled
    # statement would write NULL instead, so it must name every such column itself.
    incomplete = insert(_JOB).values(kind=bindparam("kind"), args=bindparam("args"))

    def add(db: Statements) -> Any:
        return db.execute(incomplete, {"kind": "x", "args": {}})

    with pytest.raises(ValueError, match="created_at"):
        await database.run_unit(add)


def _sqlite_only(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("PostgreSQL runs each unit in a transaction of its own (none is shared)")


async def test_units_submitted_together_share_one_commit(database: Database) -> None:
    _sqlite_only(database)
    connection_id = await _seed_connection(database)
    before = database.commits
    results = await asyncio.gather(
        *(
            database.run_unit(lambda db, n=n: _insert_inbox_row(db, f"u{n}", connection_id) or n)
            for n in range(10)
        )
    )
    assert results == list(range(10))
    assert database.commits == before + 1
    assert await _count_inbox(database) == 10


async def test_a_transaction_holds_at_most_so_many_units(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sqlite_only(database)
    monkeypatch.setattr("app.db.UNITS_PER_TRANSACTION", 4)
    connection_id = await _seed_connection(database)
    before = database.commits
    await asyncio.gather(
        *(
            database.run_unit(lambda db, n=n: _insert_inbox_row(db, f"u{n}", connection_id))
            for n in range(10)
        )
    )
    assert database.commits == before + 3  # 4 + 4 + 2
    assert await _count_inbox(database) == 10


async def test_a_failing_unit_undoes_only_its_own_statements(database: Database) -> None:
    """Units grouped in one transaction: the one that raises gets its error and leaves nothing;
    the ones before and after it commit, and each caller gets its own result."""
    connection_id = await _seed_connection(database)

    def valid_then_orphan(db: Statements) -> None:
        _insert_inbox_row(db, "half", connection_id)
        _insert_inbox_row(db, "orphan", connection_id + 999)  # no such connection: a foreign key

    outcomes = await asyncio.gather(
        database.run_unit(lambda db: _insert_inbox_row(db, "before", connection_id) or "a"),
        database.run_unit(valid_then_orphan),
        database.run_unit(lambda db: _insert_inbox_row(db, "after", connection_id) or "c"),
        return_exceptions=True,
    )
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], IntegrityError)

    def ids(db: Statements) -> list[str]:
        return [row[0] for row in db.rows("SELECT external_id FROM inbox_event ORDER BY id", ())]

    assert await database.run_unit(ids) == ["before", "after"]


async def test_an_error_that_ends_the_transaction_fails_the_whole_group(
    database: Database,
) -> None:
    """When a unit's error leaves no transaction to roll back to (as a full disk would), the
    units grouped with it are not committed either, and their callers are told so."""
    _sqlite_only(database)
    connection_id = await _seed_connection(database)

    def ends_the_transaction(db: Statements) -> None:
        db.rows("ROLLBACK", ())
        raise RuntimeError("disk full")

    outcomes = await asyncio.gather(
        database.run_unit(lambda db: _insert_inbox_row(db, "first", connection_id)),
        database.run_unit(ends_the_transaction),
        return_exceptions=True,
    )
    assert [str(outcome) for outcome in outcomes] == ["disk full", "disk full"]
    assert await _count_inbox(database) == 0
    # The connection is usable again.
    await database.run_unit(lambda db: _insert_inbox_row(db, "later", connection_id))
    assert await _count_inbox(database) == 1


async def test_a_unit_whose_caller_gave_up_waiting_is_not_run(
    database: Database, db_url: str
) -> None:
    """Cancelled while its group waits for another process's write lock: the unit never runs;
    the others of its group do."""
    _sqlite_only(database)
    connection_id = await _seed_connection(database)
    path = sqlite_path(db_url)
    assert path is not None
    ran: list[str] = []

    def unit(name: str) -> Any:
        return lambda db: ran.append(name) or _insert_inbox_row(db, name, connection_id)

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        kept = asyncio.ensure_future(database.run_unit(unit("kept")))
        dropped = asyncio.ensure_future(database.run_unit(unit("dropped")))
        await asyncio.sleep(0.05)
        assert not kept.done()  # waiting for the lock
        dropped.cancel()
        await asyncio.sleep(0)
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(kept, 10)
    assert ran == ["kept"]
    assert await _count_inbox(database) == 1


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


async def test_units_waiting_when_their_runner_is_cancelled_are_cancelled_too(
    database: Database, db_url: str
) -> None:
    """The task running the units is cancelled (the process stops) while it waits for another
    process's write lock: their callers are cancelled, none hangs, nothing was written, and
    the connection is not left inside the transaction its BEGIN opened once the lock was free."""
    _sqlite_only(database)
    connection_id = await _seed_connection(database)
    path = sqlite_path(db_url)
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        first = asyncio.ensure_future(
            database.run_unit(lambda db: _insert_inbox_row(db, "first", connection_id))
        )
        await asyncio.sleep(0.05)  # its group waits for the lock
        second = asyncio.ensure_future(
            database.run_unit(lambda db: _insert_inbox_row(db, "second", connection_id))
        )
        await asyncio.sleep(0)
        assert database._grouper is not None
        database._grouper.cancel()
        await asyncio.sleep(0.05)
    finally:
        other.execute("COMMIT")
        other.close()
    outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert await _count_inbox(database) == 0  # and the next unit began a transaction of its own


def _postgres_only(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite units share the process's one connection, which is never lost")


async def test_a_unit_whose_connection_dies_is_told_and_the_next_gets_a_new_one(
    database: Database,
) -> None:
    """The server ends the unit's session (a restart, an operator): the unit fails with
    SQLAlchemy's error marked as a lost connection, nothing it wrote stays, the dead
    connection leaves the pool, and the next unit runs on a new one."""
    _postgres_only(database)
    connection_id = await _seed_connection(database)

    def dies(db: Statements) -> None:
        _insert_inbox_row(db, "lost", connection_id)
        db.rows("SELECT pg_terminate_backend(pg_backend_pid())", ())

    with pytest.raises(DBAPIError) as caught:
        await database.run_unit(dies)
    assert caught.value.connection_invalidated
    assert database.engine.sync_engine.pool.checkedout() == 0
    await database.run_unit(lambda db: _insert_inbox_row(db, "next", connection_id))
    assert await _count_inbox(database) == 1


async def test_a_unit_cancelled_mid_statement_rolls_back_and_frees_its_connection(
    database: Database,
) -> None:
    """A unit's caller is cancelled while the server runs its statement: the statement is
    cancelled on the server too (no 30 s wait), the unit's writes are rolled back, and its
    connection goes back to the pool usable."""
    _postgres_only(database)
    connection_id = await _seed_connection(database)

    def slow(db: Statements) -> None:
        _insert_inbox_row(db, "cancelled", connection_id)
        db.rows("SELECT pg_sleep(30)", ())

    task = asyncio.ensure_future(database.run_unit(slow))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert database.engine.sync_engine.pool.checkedout() == 0
    assert await _count_inbox(database) == 0
    await database.run_unit(lambda db: _insert_inbox_row(db, "next", connection_id))
    assert await _count_inbox(database) == 1


async def _backend_pids(database: Database, count: int) -> set[int]:
    """Make the pool hold `count` connections (units side by side); their server processes."""

    def pid(db: Statements) -> int:
        [(backend, _)] = db.rows("SELECT pg_backend_pid(), pg_sleep(0.2)", ())
        return int(backend)

    pids = set(await asyncio.gather(*(database.run_unit(pid) for _ in range(count))))
    assert len(pids) == count
    return pids


async def _terminate(db_url: str, pids: set[int]) -> None:
    """What a server restart does to them, from another session."""
    other = Database(db_url)
    try:
        await other.run_unit(
            lambda db: db.rows(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)",
                (list(pids),),
            )
        )
    finally:
        await other.dispose()


async def test_a_pooled_connection_is_pinged_only_after_sitting_idle(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection in steady use costs no ping per transaction; one idle for the set time is
    pinged before use."""
    _postgres_only(database)
    dialect = database.engine.sync_engine.dialect
    ping = dialect.do_ping
    pings: list[object] = []

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return bool(ping(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counted)
    for _ in range(5):
        await _count_inbox(database)
    assert pings == []
    monkeypatch.setattr("app.db.POSTGRES_PING_AFTER_IDLE_S", 0.0)
    for _ in range(3):
        await _count_inbox(database)
    assert len(pings) == 3


async def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    database: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(database)
    monkeypatch.setattr("app.db.POSTGRES_PING_AFTER_IDLE_S", 0.0)
    [pid] = await _backend_pids(database, 1)
    await _terminate(db_url, {pid})
    assert await _count_inbox(database) == 0  # no error: the ping found it closed
    assert await _backend_pids(database, 1) != {pid}


async def test_connections_lost_in_use_fail_one_unit_and_the_pool_renews_the_rest(
    database: Database, db_url: str
) -> None:
    """The server restarts under load (no connection idle long enough for a ping): the first
    unit on a dead connection fails, told the connection was lost; the pool's other
    connections, made before it, are replaced at their next checkout instead of failing too."""
    _postgres_only(database)
    pids = await _backend_pids(database, 3)
    await _terminate(db_url, pids)
    with pytest.raises(DBAPIError) as caught:
        await _count_inbox(database)
    assert caught.value.connection_invalidated
    counts = await asyncio.gather(*(_count_inbox(database) for _ in range(3)))
    assert counts == [0, 0, 0]
    assert not (await _backend_pids(database, 3)) & pids


async def test_a_session_cancelled_while_its_begin_waits_leaves_the_connection_clean(
    database: Database, db_url: str
) -> None:
    """A session's task is cancelled (a run whose lease was lost, say) while its BEGIN waits in
    the driver's thread for another process's lock: once the lock is free, that BEGIN must not
    leave the process's one connection inside a transaction nobody owns."""
    _sqlite_only(database)
    connection_id = await _seed_connection(database)
    path = sqlite_path(db_url)
    assert path is not None

    async def write() -> None:
        async with database.session_scope() as session:
            await session.execute(
                text(
                    "INSERT INTO inbox_event (source, connection_id, external_id, event_type, "
                    "outcome, received_at) VALUES ('test', :c, 'cancelled', 'x', 'accepted', "
                    "CURRENT_TIMESTAMP)"
                ),
                {"c": connection_id},
            )

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        task = asyncio.ensure_future(write())
        await asyncio.sleep(0.1)  # its BEGIN waits for the lock in the driver's thread
        task.cancel()
        await asyncio.sleep(0.1)
    finally:
        other.execute("COMMIT")  # the waiting BEGIN gets the lock now
        other.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    await database.run_unit(lambda db: _insert_inbox_row(db, "next", connection_id))
    async with database.session_scope() as session:
        await session.execute(text("DELETE FROM inbox_event WHERE external_id = 'nothing'"))
    assert await _count_inbox(database) == 1
