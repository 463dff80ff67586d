"""Engines, sessions and transactions: the one way calbridge reaches its database.

Every query is SQLAlchemy 2 on an `AsyncSession` (ORM or Core statements through
`session.execute`), on aiosqlite or psycopg. One request or one job is one transaction:
`Database.session_scope()` commits when its block succeeds and rolls back when it raises.

SQLite runs in WAL mode with foreign keys on, and every transaction begins with
`BEGIN IMMEDIATE` (SQLAlchemy's documented event recipe), so two writers never race for a lock
upgrade. A process holds one SQLite connection: its transactions queue for it in the pool, fairly
and without the sleeps of SQLite's busy handler, which only waits for other processes. So never
open a second session inside an open one in the same task: it would wait for itself. Its
statements run on the event loop's thread (`app/sqlite_inline.py` says why).
PostgreSQL uses a pool of at most `POSTGRES_POOL_SIZE` connections, each pinged before use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from app.sqlite_inline import inline_creator

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Jobs queue for the one SQLite connection; a wait this long means something is stuck.
SQLITE_POOL_TIMEOUT_S = 60
# With a worker's listener (app/queue/wakeups.py) one more per process: a server's default
# max_connections of 100 serves eight processes, with room for an operator's psql.
POSTGRES_POOL_SIZE = 10


def _with_driver(url: str, sqlite_driver: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername=sqlite_driver)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def async_url(url: str) -> URL:
    """The URL with an asyncio driver: `sqlite` → aiosqlite, `postgresql` → psycopg 3."""
    return _with_driver(url, "sqlite+aiosqlite")


def sync_url(url: str) -> URL:
    """The URL with a blocking driver for Alembic and scripts: pysqlite or psycopg 3."""
    return _with_driver(url, "sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def configure_sqlite(sync_engine: Any) -> None:
    """calbridge's SQLite settings on an engine (async or blocking): WAL, a busy timeout,
    foreign keys, and `BEGIN IMMEDIATE` for every transaction."""

    @event.listens_for(sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN is turned off, so that `_begin` below decides.
        if dbapi_connection.isolation_level is not None:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First: switching to WAL waits for another process's lock like any write.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode a committed transaction survives a crash of calbridge; a power loss may
        # lose the last ones (docs/operations.md).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for a calbridge database URL, configured for its backend."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is None:
            kwargs.setdefault("poolclass", StaticPool)  # each connection would be a new database
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("poolclass", AsyncAdaptedQueuePool)
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
            kwargs.setdefault("pool_timeout", SQLITE_POOL_TIMEOUT_S)
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("async_creator_fn", inline_creator(SQLITE_BUSY_TIMEOUT_MS))
        engine = create_async_engine(target, **kwargs)
        configure_sqlite(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(target, **kwargs)


class Database:
    """The engine and session factory shared by every request and job of one process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

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
        """One transaction: commits when the block succeeds, rolls back when it raises."""
        async with self.session() as session:
            yield session
            await session.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: the request's session. The endpoint commits; anything else rolls back."""
    database: Database = request.app.state.database
    async with database.session() as session:
        yield session
