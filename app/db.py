"""Engine, session factory, the request-session dependency, `session_scope()` for jobs, and
`run_unit()` for hot-path units of work (plain SQL, or Core statements compiled once): they run
straight on the driver (sqlite3, or psycopg's async connection through SQLAlchemy's greenlet
bridge), without SQLAlchemy's per-statement machinery.

SQLite runs in WAL mode with one shared connection per process: every transaction queues for it
in asyncio (fair, no busy-wait sleeps) and starts with `BEGIN IMMEDIATE`, so no two writers ever
race for a lock upgrade; inside a transaction its statements run on the event loop's thread
(`_LoopConnection`). PostgreSQL uses an ordinary pool of at most 10 connections. So: never open
a second session while one is open in the same task (on SQLite it would wait for itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

import aiosqlite
import psycopg
from fastapi import Request
from sqlalchemy import Column, event
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.util import await_only, greenlet_spawn

R = TypeVar("R")

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default
POSTGRES_POOL_SIZE = 10
POSTGRES_PING_AFTER_IDLE_S = 1.0


def async_url(url: str) -> URL:
    """The URL with an asyncio driver: `sqlite` → aiosqlite, `postgresql` → psycopg 3."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def sync_url(url: str) -> URL:
    """The URL with a blocking driver for Alembic: pysqlite or psycopg 3."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, autocheckpoint: int) -> None:
    # Autocommit at the driver level so that SQLAlchemy's "begin" event below decides how a
    # transaction starts (pysqlite's own implicit BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # First: switching to WAL waits for another process's lock like any write.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a crash of calbridge; a power loss
    # may lose the last transactions (see docs/operations.md).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def configure_sqlite(sync_engine: Any, *, on_the_loop: bool = False) -> None:
    """Apply calbridge's SQLite connection settings to an engine.

    `on_the_loop` (the service's async engine, whose connections are `_LoopConnection`s): a
    transaction begins on the event loop's thread when no other process holds the write lock,
    and commits skip SQLite's automatic checkpoint (`Database` runs checkpoints in a thread).
    """
    autocheckpoint = 0 if on_the_loop else SQLITE_AUTOCHECKPOINT_PAGES
    event.listen(
        sync_engine,
        "connect",
        lambda dbapi_connection, record: _sqlite_pragmas(
            dbapi_connection, record, autocheckpoint=autocheckpoint
        ),
    )

    @event.listens_for(sync_engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, _LoopConnection) and _begin_without_waiting(driver._conn):
            return
        # Another process holds the lock (or a plain driver): wait for it in the busy handler,
        # which for a `_LoopConnection` means in aiosqlite's thread, not on the loop.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(sync_engine, "reset")
    def _rollback_if_open(dbapi_connection: Any, record: Any, state: Any) -> None:
        # A connection goes back to the pool with a transaction still open only when its user
        # failed half-way; the driver runs in autocommit mode otherwise, so asking costs a
        # flag read (aiosqlite's `in_transaction`), not a round trip.
        driver = record.driver_connection
        if state.asyncio_safe and driver is not None and driver.in_transaction:
            dbapi_connection.rollback()


class _LoopConnection(aiosqlite.Connection):
    """aiosqlite's connection, except that a call made inside a transaction runs at once on the
    event loop's thread instead of in aiosqlite's.

    Inside a transaction nothing can wait for another process: every transaction begins with
    `BEGIN IMMEDIATE`, so it holds the write lock, WAL readers never wait, and a COMMIT skips the
    automatic checkpoint (its fsyncs). A statement is then a C call of microseconds, whereas the
    hand-off to the thread and back cost each one a wake-up and, on a busy loop, up to a GIL
    switch interval (5 ms) before the thread could run it. Outside a transaction (BEGIN
    waiting for another process's lock, connecting, closing) calls still go to the thread.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if self._running and connection is not None and connection.in_transaction:
            return fn(*args, **kwargs)
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def _loop_connect(database: str, *, iter_chunk_size: int = 64, **kwargs: Any) -> _LoopConnection:
    """`aiosqlite.connect`, making a `_LoopConnection` (SQLAlchemy's `async_creator_fn`)."""

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return connection

    connection = _LoopConnection(connector, iter_chunk_size)
    connection._thread.daemon = True  # as SQLAlchemy's dialect sets it for aiosqlite's own
    return connection


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for a calbridge database URL, configured for its backend."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # One connection: transactions queue in asyncio instead of sleeping in SQLite's busy
        # handler. In-memory databases need it anyway (each connection would be a new database).
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 60)
        # The reset on return is `_rollback_if_open` (configure_sqlite): the pool's own would
        # cost a hand-off to the driver's thread on every return, transaction or not.
        kwargs.setdefault("pool_reset_on_return", None)
        kwargs["connect_args"] = {
            "async_creator_fn": _loop_connect,
            **kwargs.get("connect_args", {}),
        }
        engine = create_async_engine(target, **kwargs)
        configure_sqlite(engine.sync_engine, on_the_loop=True)
        return engine
    # At most 10 connections per process, however many jobs run at once (each holds one only
    # for a short transaction, and waits for one in the pool otherwise), and a worker's listener
    # (app/queue/wakeups.py) one more: a server's default max_connections of 100 then serves
    # eight processes, with room for an operator's psql.
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    kwargs.setdefault("max_overflow", 0)
    engine = create_async_engine(target, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine.sync_engine)
    return engine


def _ping_after_idle(sync_engine: Any) -> None:
    """Ping a pooled PostgreSQL connection before use only when it sat idle in the pool for
    `POSTGRES_PING_AFTER_IDLE_S`: a server restart, or a firewall's idle timeout, may have
    closed it meanwhile. SQLAlchemy's pre-ping would cost every transaction a round trip,
    though a connection in steady use was just seen working. One that failed in use anyway (the
    server went away under load) marks every older connection of the pool as stale
    (`_PsycopgStatements._error`, and SQLAlchemy's own execution for sessions)."""

    @event.listens_for(sync_engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < POSTGRES_PING_AFTER_IDLE_S:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool then replaces the connection and checks out again.
            raise DisconnectionError(f"pooled connection lost while idle: {exc}") from exc


class Statements(Protocol):
    """The statements of a unit of work (`Database.run_unit`), run synchronously. Driver errors
    are SQLAlchemy's."""

    dialect: Dialect

    def rows(self, sql: str, parameters: Sequence[Any]) -> Sequence[tuple[Any, ...]]:
        """Run one statement of plain SQL in the dialect's parameter style (`?` on SQLite, `%s`
        on PostgreSQL); the rows it returns (none for a statement without RETURNING)."""
        ...

    def execute(self, statement: ClauseElement, parameters: Mapping[str, Any]) -> Sequence[Any]:
        """Run a Core statement (no ORM entities) with named parameters; its rows, whose values
        are read by attribute as from SQLAlchemy's (typed: JSON decoded, datetimes aware)."""
        ...


class _SqliteStatements:
    def __init__(self, connection: sqlite3.Connection, dialect: Dialect) -> None:
        self._connection = connection
        self.dialect = dialect

    def rows(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any]
    ) -> Sequence[tuple[Any, ...]]:
        try:
            return self._connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc

    def execute(self, statement: ClauseElement, parameters: Mapping[str, Any]) -> Sequence[Any]:
        compiled = _compiled(statement, self.dialect)
        return compiled.read(self.rows(*compiled.bind(parameters)))


class _PsycopgStatements:
    """A unit's statements on a pooled psycopg connection, in the transaction psycopg begins at
    the first one: straight on the driver, awaited from the unit's greenlet (SQLAlchemy's own
    bridge from synchronous code to asyncio), Core statements compiled once as on SQLite."""

    def __init__(self, connection: PoolProxiedConnection, dialect: Dialect) -> None:
        self._connection = connection
        self._driver = cast(psycopg.AsyncConnection[Any], connection.driver_connection)
        self._cursor = self._driver.cursor()
        self.dialect = dialect

    def rows(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any]
    ) -> Sequence[tuple[Any, ...]]:
        cursor = self._cursor
        try:
            await_only(cursor.execute(sql, parameters))
            # Asked of the result itself: `cursor.description` builds a column list each time.
            result = cursor.pgresult
            if result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                return []
            return await_only(cursor.fetchall())
        except psycopg.Error as exc:
            raise self._error(exc, sql, parameters) from exc

    def execute(self, statement: ClauseElement, parameters: Mapping[str, Any]) -> Sequence[Any]:
        compiled = _compiled(statement, self.dialect)
        return compiled.read(self.rows(*compiled.bind(parameters)))

    def commit(self) -> None:
        try:
            await_only(self._driver.commit())
        except psycopg.Error as exc:
            raise self._error(exc, "COMMIT", ()) from exc

    def _error(self, exc: psycopg.Error, sql: str, parameters: Any) -> DBAPIError:
        """SQLAlchemy's exception for the driver's; a lost connection leaves the pool."""
        lost = self.dialect.is_disconnect(exc, self._connection.dbapi_connection, None)  # type: ignore[arg-type]
        if lost:
            # As SQLAlchemy's own execution does: this connection is closed, and every other one
            # the pool made before it is replaced at its next checkout (the server may be new).
            self._connection._pool._invalidate(self._connection, exc)
        return cast(
            DBAPIError,
            DBAPIError.instance(
                sql,
                parameters,
                exc,
                psycopg.Error,
                dialect=self.dialect,
                connection_invalidated=lost,
            ),
        )


class _ConnectionStatements:
    """A unit's statements on a session's connection, in its transaction (`run_in_session`),
    through SQLAlchemy's execution."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect

    def rows(self, sql: str, parameters: Sequence[Any]) -> Sequence[tuple[Any, ...]]:
        result = self._connection.exec_driver_sql(sql, tuple(parameters))
        return result.all() if result.returns_rows else []

    def execute(self, statement: ClauseElement, parameters: Mapping[str, Any]) -> Sequence[Any]:
        result = self._connection.execute(cast(Executable, statement), dict(parameters))
        return result.all() if result.returns_rows else []


@dataclass(frozen=True, slots=True)
class _ListItem:
    """Item `index` of the IN list `name`, where SQLAlchemy's expansion puts it."""

    name: str
    index: int


@dataclass(frozen=True, slots=True)
class _Layout:
    """A compiled statement's SQL and, per parameter, where its value comes from (a named
    parameter, or an item of a named list) and its bind processor; `keys` are the parameters'
    names in the SQL for a driver with named parameters (psycopg), None for a positional one."""

    sql: str
    sources: tuple[tuple[str, int | None], ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    keys: tuple[str, ...] | None


class _Compiled:
    """A Core statement compiled once for a dialect's driver: its SQL, how named parameters
    become the driver's (positional for sqlite3, named for psycopg; SQLAlchemy's bind
    processors), and how result values become typed ones (its result processors). What
    SQLAlchemy does per execution, minus its per-execution machinery (about 60 µs a statement
    on the async engine, measured)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        columns = list(getattr(statement, "exported_columns", ()))
        if isinstance(statement, Insert) and not columns:
            # Rows it does not ask for: SQLAlchemy would add `RETURNING id` on PostgreSQL.
            statement = statement.inline()
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        computed = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if computed:
            # SQLAlchemy fills those in per execution; here the statement must give them.
            missing = ", ".join(sorted(column.key for column in computed))
            raise ValueError(f"give the values of {missing} in the statement (Python defaults)")
        if compiled.escaped_bind_names:  # names the driver would see spelled otherwise
            raise ValueError("give the statement's parameters plain names")
        self._compiled = compiled
        self._positional = dialect.positional
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():  # name: as the SQL spells it
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._processors[name] = process
        # An IN list's SQL depends on its length: SQLAlchemy expands it per execution, and its
        # layout is remembered here per length of each list.
        self._lists = [name for bind, name in compiled.bind_names.items() if bind.expanding]
        self._layouts: dict[tuple[int, ...], _Layout] = {}
        if not self._lists:
            names = tuple(
                compiled.positiontup or () if self._positional else compiled.bind_names.values()
            )
            self._plain = _Layout(
                compiled.string,
                tuple((name, None) for name in names),
                tuple(self._processors.get(name) for name in names),
                None if self._positional else names,
            )
        self._readers = [from_driver(dialect, column) for column in columns]
        self._row: Any = namedtuple("Row", [column.key for column in columns], rename=True)  # type: ignore[misc]

    def bind(self, parameters: Mapping[str, Any]) -> tuple[str, list[Any] | dict[str, Any]]:
        values = self._compiled.construct_params(dict(parameters))
        if self._lists:
            for name in self._lists:
                if not isinstance(values[name], list | tuple):  # a set, say
                    values[name] = list(values[name])
            lengths = tuple(len(values[name]) for name in self._lists)
            layout = self._layouts.get(lengths) or self._expand(values, lengths)
        else:
            layout = self._plain
        converted: list[Any] = []
        for (name, index), process in zip(layout.sources, layout.processors, strict=True):
            value = values[name] if index is None else values[name][index]
            converted.append(value if process is None else process(value))
        if layout.keys is None:
            return layout.sql, converted
        return layout.sql, dict(zip(layout.keys, converted, strict=True))

    def _expand(self, values: Mapping[str, Any], lengths: tuple[int, ...]) -> _Layout:
        """SQLAlchemy's expansion for lists of these lengths, with each item's position in the
        SQL traced back to its list (by expanding placeholders instead of the values)."""
        traced = dict(values)
        for name, length in zip(self._lists, lengths, strict=True):
            traced[name] = [_ListItem(name, index) for index in range(length)]
        state = self._compiled.construct_expanded_state(traced)
        # The state's processors are those of the expanded items only.
        processors = {**self._processors, **state.processors}
        names = tuple(state.positiontup or () if self._positional else state.parameters)
        sources: list[tuple[str, int | None]] = []
        for name in names:
            value = state.parameters[name]
            sources.append(
                (value.name, value.index) if isinstance(value, _ListItem) else (name, None)
            )
        layout = _Layout(
            state.statement,
            tuple(sources),
            tuple(processors.get(name) for name in names),
            None if self._positional else names,
        )
        self._layouts[lengths] = layout
        return layout

    def read(self, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        readers, make = self._readers, self._row._make
        return [make(read(value) for read, value in zip(readers, row, strict=True)) for row in rows]


@lru_cache(maxsize=512)  # keyed by statement object (built once, at import) and dialect
def _compiled(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    return _Compiled(statement, dialect)


#: At most this many units share a transaction (SQLite), so that none waits long for the lock.
UNITS_PER_TRANSACTION = 128


@dataclass(slots=True)
class _Unit(Generic[R]):
    """A unit of work waiting for its transaction, and the future its caller awaits."""

    unit: Callable[[Statements], R]
    future: asyncio.Future[R]


def _begin_without_waiting(sqlite: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE if no other process holds the write lock; False (no transaction) if one
    does. The busy timeout is off for this one statement only."""
    sqlite.execute("PRAGMA busy_timeout=0")
    try:
        sqlite.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return False
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
    finally:
        sqlite.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return True


async def _begin_in_thread(
    driver: aiosqlite.Connection, sqlite: sqlite3.Connection, statements: Statements
) -> None:
    """BEGIN IMMEDIATE in the driver's thread, where it waits for another process's lock. If
    the waiting task is cancelled, the BEGIN still happens in that thread: it is waited for and
    rolled back, so the connection never goes back to the pool inside a transaction."""
    begin = asyncio.ensure_future(driver._execute(statements.rows, "BEGIN IMMEDIATE", ()))  # type: ignore[no-untyped-call]
    try:
        await asyncio.shield(begin)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await begin
        if sqlite.in_transaction:
            sqlite.execute("ROLLBACK")
        raise


def _run_in_transaction(
    sqlite: sqlite3.Connection, db: Statements, group: list[_Unit[Any]]
) -> bool:
    """The group's units in the open transaction, each in a savepoint of its own, then COMMIT
    (True if it committed); each unit's future gets its result or its own error. A unit that
    raises is undone alone, unless its error ended the transaction (a full disk, say): then
    every unit of the group fails with it, and none of them left anything behind."""
    done: list[tuple[_Unit[Any], Any]] = []
    # A unit alone needs no savepoint: its error rolls the whole transaction back.
    savepoints = len(group) > 1
    try:
        for pending in group:
            if pending.future.done():  # its caller was cancelled while it waited
                continue
            if savepoints:
                db.rows("SAVEPOINT unit", ())
            try:
                result = pending.unit(db)
            except Exception as exc:
                if not savepoints or not sqlite.in_transaction:
                    raise
                db.rows("ROLLBACK TO unit", ())
                db.rows("RELEASE unit", ())
                pending.future.set_exception(exc)
                continue
            if savepoints:
                db.rows("RELEASE unit", ())
            done.append((pending, result))
        db.rows("COMMIT", ())
    except BaseException as exc:
        if sqlite.in_transaction:
            sqlite.execute("ROLLBACK")
        for pending in group:
            if not pending.future.done():
                pending.future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return False
    for pending, result in done:
        if not pending.future.done():
            pending.future.set_result(result)
    return True


def param_marker(dialect_name: str) -> str:
    """The driver's parameter marker: `?` (sqlite3) or `%s` (psycopg)."""
    return "?" if dialect_name == "sqlite" else "%s"


@lru_cache(maxsize=256)  # keyed by dialect (one per engine) and column: a bounded set
def to_driver(dialect: Dialect, column: Column[Any]) -> Callable[[Any], Any]:
    """A value of `column` as the dialect's driver takes it, converted as SQLAlchemy would."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _unchanged


@lru_cache(maxsize=256)
def from_driver(dialect: Dialect, column: Column[Any]) -> Callable[[Any], Any]:
    """A value of `column` as SQLAlchemy would read it from the dialect's driver."""
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def memoized(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert` remembering its answers: for one batch's values, which mostly repeat."""
    seen: dict[Any, Any] = {}

    def remembered(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            seen[value] = result = convert(value)
            return result

    return remembered


async def run_in_session(session: AsyncSession, unit: Callable[[Statements], R]) -> R:
    """Run a unit of work's statements in the caller's session and transaction."""
    return await session.run_sync(
        lambda sync_session: unit(_ConnectionStatements(sync_session.connection()))
    )


class Database:
    """The engine and session factory shared by every request and job of one process."""

    # On SQLite, commits skip SQLite's automatic checkpoint (which would copy the WAL into the
    # database and fsync it inside that COMMIT, on the loop); every this many commits, a
    # checkpoint runs in a thread of its own instead.
    commits_per_checkpoint = 16

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._commits = 0
        self._units: list[_Unit[Any]] = []  # SQLite: waiting for their transaction
        self._grouper: asyncio.Future[None] | None = None
        self._checkpointer = _Checkpointer(sqlite_path(url))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "commit", lambda _connection: self._committed())

    def _committed(self) -> None:
        self._commits += 1
        if self._commits % self.commits_per_checkpoint == 0:
            self._checkpointer.start()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that rolls back whatever was not committed when the block ends."""
        async with self.sessionmaker() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block succeeds, rolls back when it raises."""
        async with self.session() as session:
            yield session
            await session.commit()

    async def run_unit(self, unit: Callable[[Statements], R]) -> R:
        """Run `unit` as one transaction, committed when it returns, rolled back if it raises.

        On SQLite the unit runs on the event loop's thread, synchronously and straight on the
        driver (no SQLAlchemy in between), and shares its transaction with the other units
        submitted in the same turn of the loop, each in a savepoint of its own: one commit for
        the lot, yet each unit's error undoes only its own statements (`_run_in_transaction`). The
        process's one connection is checked out, so only another process can hold the write
        lock; then only the `BEGIN` waits for it, in the driver's thread, never on the loop. On
        PostgreSQL it runs in a transaction on a pooled connection of its own, straight on
        psycopg (`_PsycopgStatements`).
        """
        if not self.is_sqlite:
            return cast(R, await greenlet_spawn(self._run_on_pooled_connection, unit))
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._units.append(_Unit(unit, future))
        if self._grouper is None or self._grouper.done():
            self._grouper = asyncio.ensure_future(self._run_units())
        return await future

    def _run_on_pooled_connection(self, unit: Callable[[Statements], R]) -> R:
        """PostgreSQL: `unit` in a transaction on a pooled connection of its own, straight on
        the driver (in a greenlet: the pool and the statements await through it). Whatever
        was not committed, the pool rolls back as the connection returns to it (or closes the
        connection if it cannot)."""
        connection = self.engine.sync_engine.raw_connection()
        try:
            statements = _PsycopgStatements(connection, self.engine.dialect)
            result = unit(statements)
            statements.commit()
            return result
        finally:
            connection.close()

    async def _run_units(self) -> None:
        """Run the queued units, a group per transaction, until none is left; the first group
        starts once the callbacks ready in this turn of the loop have added theirs."""
        while self._units:
            group = self._units[:UNITS_PER_TRANSACTION]
            del self._units[:UNITS_PER_TRANSACTION]
            try:
                await self._run_group(group)
            except asyncio.CancelledError:  # the process is stopping: so are the waiting units
                for pending in [*group, *self._units]:
                    pending.future.cancel()
                self._units.clear()
                raise
            except Exception as exc:  # checking out, or waiting for, the connection
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(exc)

    async def _run_group(self, group: list[_Unit[Any]]) -> None:
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = cast(aiosqlite.Connection, raw.driver_connection)
            sqlite, statements = driver._conn, _SqliteStatements(driver._conn, self.engine.dialect)
            if not _begin_without_waiting(sqlite):
                # Another process holds the lock: wait for it in the driver's thread (aiosqlite's
                # one entry for running a function there, which tests/test_db.py holds it to).
                # Once the transaction is open, `_LoopConnection` runs on the loop again.
                await _begin_in_thread(driver, sqlite, statements)
            if _run_in_transaction(sqlite, statements, group):
                self._committed()

    @property
    def commits(self) -> int:
        """Transactions committed so far (SQLite; a group of units is one)."""
        return self._commits

    @property
    def checkpoints(self) -> int:
        """Checkpoints run in the background so far (SQLite)."""
        return self._checkpointer.runs

    async def dispose(self) -> None:
        await self._checkpointer.close()
        await self.engine.dispose()


class _Checkpointer:
    """`PRAGMA wal_checkpoint(PASSIVE)` in a worker thread, on a connection of its own, one at a
    time: it copies committed WAL frames into the database without waiting for (or blocking)
    readers and writers, and its fsyncs keep off the event loop."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None
        self.runs = 0

    def start(self) -> None:
        if self._path is None or (self._running is not None and not self._running.done()):
            return
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        self._running.add_done_callback(_log_checkpoint_failure)

    def _checkpoint(self) -> None:
        assert self._path is not None
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False
            )
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.runs += 1

    async def close(self) -> None:
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _log_checkpoint_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        # The WAL only grows until the next one (or a session's automatic checkpoint).
        log.warning("SQLite background checkpoint failed: %r", future.exception())


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: the request's session. The endpoint commits; anything else rolls back."""
    database: Database = request.app.state.database
    async with database.session() as session:
        yield session
