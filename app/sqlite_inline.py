"""SQLite statements run on the event loop's thread: the one fast path calbridge keeps for its
embedded database, handed to SQLAlchemy's aiosqlite dialect through its documented
`async_creator_fn` connect argument.

Why: aiosqlite runs every call (cursor, execute, fetch, commit, close) in a thread of its own, and
each hand-off costs a thread wake-up and a GIL switch. A transaction of a few statements made
a dozen of them, while it held the process's one SQLite connection, so every request and job
queued behind those hand-offs: the webhook intake and the end-to-end sync fell an order of
magnitude below the floors `bench/intake.py` and `bench/e2e.py` hold them to
(`docs/operations.md`). Inside a transaction that holds the write lock (every one begins with
`BEGIN IMMEDIATE`) a statement is a C call of microseconds, so it runs inline. The only waits
SQLite can have, for another process's write lock, go to a thread: `BEGIN IMMEDIATE` is first
tried without waiting and, when another process holds the lock, waited for in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineCursor:
    """A sqlite3 cursor behind aiosqlite's awaitable cursor interface."""

    def __init__(self, connection: InlineConnection) -> None:
        self._owner = connection
        self._cursor = connection.open_connection.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        if sql == "BEGIN IMMEDIATE":
            await self._owner.begin_immediate()
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """A sqlite3 connection (autocommit at the driver: SQLAlchemy's `begin` event decides how a
    transaction starts) behind aiosqlite's awaitable connection interface."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
        # SQLAlchemy's aiosqlite adapter checks `_connection` to tell an open connection.
        self._connection: sqlite3.Connection | None = connection
        self._busy_timeout_ms = busy_timeout_ms

    @property
    def open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self.open_connection.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._connection is not None and self._connection.in_transaction

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def begin_immediate(self) -> None:
        """Take the write lock at once if it is free; otherwise wait for it in a thread. If the
        waiting task is cancelled, the BEGIN still happens in that thread: it is waited for and
        rolled back, so the connection never returns to the pool inside a transaction."""
        connection = self.open_connection
        connection.execute("PRAGMA busy_timeout=0")
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in BUSY_CODES:
                raise
        finally:
            connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        waiting = asyncio.ensure_future(asyncio.to_thread(connection.execute, "BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await waiting
            if connection.in_transaction:
                connection.rollback()
            raise

    async def commit(self) -> None:
        self.open_connection.commit()

    async def rollback(self) -> None:
        self.open_connection.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.open_connection.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        """Close at once (SQLAlchemy's forced termination)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_creator(busy_timeout_ms: int) -> Any:
    """The `async_creator_fn` making `InlineConnection`s."""

    async def connect(database: str, **kwargs: Any) -> InlineConnection:
        kwargs.pop("check_same_thread", None)
        connection = sqlite3.connect(
            database, isolation_level=None, check_same_thread=False, **kwargs
        )
        return InlineConnection(connection, busy_timeout_ms)

    return connect
